"""The engine's own parts: labels, patterns, import scanning, the stat cache, the CAS."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from buildsys.cache.cas import CAS
from buildsys.cache.stat import FileDigests
from buildsys.digests import digest_file
from buildsys.errors import UserError
from buildsys.labels import Label, Pattern
from buildsys.load.pysources import python_closure

REPO = Path(__file__).resolve().parents[2]
TOOLCHAIN = {"torch", "executorch", "coremltools", "torchao", "onnx", "onnxruntime", "onnxscript"}


def test_labels():
    assert Label.parse("//a/b:c") == Label("a/b", "c")
    assert Label.parse("//a/b") == Label("a/b", "b")
    assert Label.parse(":c", "pkg") == Label("pkg", "c")
    assert str(Label.parse("//:root")) == "//:root"
    for bad in ["a:b", "//a/../b:c", "//a:b/c", ":c"]:
        with pytest.raises(UserError):
            Label.parse(bad)


def test_patterns():
    vision = Label("models/vision", "convnet")
    assert Pattern.parse("//...").matches(vision)
    assert Pattern.parse("//models/...").matches(vision)
    assert not Pattern.parse("//models/...").matches(Label("modelsx", "a"))
    assert Pattern.parse("//models/vision:all").matches(vision)
    assert not Pattern.parse("//models:all").matches(vision)
    assert Pattern.parse("//models/vision:convnet").matches(vision)
    with pytest.raises(UserError):
        Pattern.parse("models/...")


def test_python_closure_follows_first_party_imports(tmp_path: Path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("import torch\nfrom . import b\nfrom pkg.sub import c\n")
    (tmp_path / "pkg" / "b.py").write_text("import os\n")
    (tmp_path / "pkg" / "sub" / "c.py").write_text("from ..b import x\n")
    (tmp_path / "pkg" / "unused.py").write_text("")
    files = [p.relative_to(tmp_path).as_posix() for p in python_closure(tmp_path, "pkg.a")]
    assert files == ["pkg/__init__.py", "pkg/a.py", "pkg/b.py", "pkg/sub/__init__.py", "pkg/sub/c.py"]


def test_stat_cache_reads_an_unchanged_file_once(tmp_path: Path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x" * 1000)
    old = path.stat().st_mtime - 10  # older than the racy window
    os.utime(path, (old, old))
    digests = FileDigests(tmp_path / "cache" / "stat")
    first = digests.digest(path)
    assert digests.digest(path) == first and digests.hashed == 1
    path.write_bytes(b"y" * 1000)
    os.utime(path, (old + 1, old + 1))
    assert digests.digest(path) != first and digests.hashed == 2
    digests.close()


def test_cas_trees_roundtrip_and_corruption_is_detected(tmp_path: Path):
    cas = CAS(tmp_path / "cache" / "cas")
    src = tmp_path / "pkg.mlpackage"
    (src / "Data" / "weights").mkdir(parents=True)  # an empty directory must survive
    (src / "Manifest.json").write_text("{}")
    (src / "Data" / "model.mlmodel").write_bytes(b"\x00\x01")
    digest = cas.put_tree(src)
    assert digest == CAS.tree_digest(src, digest_file)
    dest = tmp_path / "out" / "pkg.mlpackage"
    cas.materialize(digest, True, dest)
    assert (dest / "Data" / "weights").is_dir() and (dest / "Data" / "model.mlmodel").read_bytes() == b"\x00\x01"
    blob = cas.put_bytes(b"hello")
    os.chmod(cas.path(blob), 0o644)
    cas.path(blob).write_bytes(b"hellO")  # bit rot
    assert not cas.verify(blob) and not cas.has(blob)  # removed: a miss, never a wrong result


def test_rules_import_no_toolchain_at_load_time():
    import subprocess
    import sys

    code = "import sys, rules, buildsys.cli.main, modelbuild.__main__; print(sorted(m for m in %r if m in sys.modules))" % (TOOLCHAIN | {"numpy"},)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


class _Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_the_sqlite_stores_refuse_pickled_rows_and_write_only_plain_data(tmp_path: Path):
    """diskcache unpickles a row marked as pickled however the store is opened: ours refuse such rows
    (a miss, one warning), and write nothing that would need pickle."""
    import diskcache

    from buildsys.cache.layout import Layout
    from buildsys.cache.stores import Stores

    src = tmp_path / "ws" / "a.txt"
    src.parent.mkdir()
    src.write_text("a")
    os.utime(src, (1, 1))  # old enough to be remembered
    marker = tmp_path / "ran"
    layout = Layout(tmp_path / "cache")
    Stores(layout.root).close()
    with diskcache.Cache(str(layout.stat)) as raw:  # as a hostile writer would: pickle mode
        raw.set(str(src.resolve()), _Planted(marker))
    with diskcache.Cache(str(layout.ac)) as raw:
        raw.set("k" * 64, _Planted(marker))
    stores = Stores(layout.root)
    try:
        assert stores.digests.digest(src) == digest_file(src) and stores.digests.hashed == 1
        assert stores.action_cache.get("k" * 64) is None
        assert not marker.exists()
        assert [w.split(" (")[0] for w in stores.warnings] == [
            "the stat cache had an entry it could not use", f"dropped the action-cache record {'k' * 16}: unreadable"]
        stores.action_cache.put_note("//:t/export", {"a": 1})
        assert stores.action_cache.get_note("//:t/export") == {"a": 1}
    finally:
        stores.close()
    with diskcache.Cache(str(layout.stat)) as raw, diskcache.Cache(str(layout.ac)) as ac:
        import sqlite3

        for db in (raw, ac):
            modes = {m for (m,) in sqlite3.connect(Path(db.directory) / "cache.db").execute("SELECT mode FROM Cache")}
            assert diskcache.core.MODE_PICKLE not in modes, "every row is plain data"


def test_an_exception_without_a_message_still_gives_a_reason():
    from buildsys.exec.ray import _reason

    assert _reason(ConnectionError()) == "ConnectionError, with no message from Ray"
    assert _reason(RuntimeError("  two\n  lines ")) == "two lines"


def test_the_names_a_module_defines_are_read_from_its_source(tmp_path: Path):
    """An entry's misspelt class is found at load, from the module's source; a module whose names
    cannot be read that way (a star import, a module __getattr__, globals()) is never refused."""
    from buildsys.load.pysources import UNKNOWN, defined_names

    module = tmp_path / "m.py"
    module.write_text("import torch.nn as nn\nfrom x import y as z\ntry:\n    from a import B\nexcept ImportError:\n"
                      "    B = None\nif True:\n    def f():\n        inner = 1\nclass C:\n    attr = 2\nN, (M, K) = 1, (2, 3)\n")
    assert defined_names(module) == {"nn", "z", "B", "f", "C", "N", "M", "K"}
    for dynamic in ("from x import *\n", "def __getattr__(name):\n    pass\n", "globals()['X'] = 1\n",
                    "def f():\n    global X\n    X = 1\n"):
        module.write_text(dynamic)
        assert defined_names(module) == {UNKNOWN}, dynamic

"""out/ is the user's, the cache is modelbuild's: out/ never shares an inode with the CAS, an edited
artifact is restored by the next build with the cache intact, and an output that no declared target
owns any more is removed, but only by a build that knows every target that could own it."""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest
from helpers import build, by_status

WORKSPACE = Path(__file__).parents[1] / "workspaces" / "release"
ROOT_BUILD = """
model(name = "mlp", entry = "models.nets:TinyMLP", inputs = {"x": tensor([4, 16])})
pt2_program(name = "a", model = ":mlp")
pt2_program(name = "b", model = ":mlp", decompose = "none")
"""
SUB_BUILD = """
model(name = "mlp", entry = "models.nets:TinyMLP", inputs = {"x": tensor([4, 16])}, init_seed = 1)
pt2_program(name = "c", model = ":mlp")
"""


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def blobs(ws: Path) -> list[Path]:
    return [p for p in (ws / "cache" / "cas").glob("??/*") if p.is_file()]


def assert_cas_intact(ws: Path) -> None:
    bad = [p for p in blobs(ws) if sha(p) != p.parent.name + p.name]
    assert not bad, f"CAS blobs whose bytes no longer match their digest: {bad}"


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """Two packages: //:a and //:b from one model, //sub:c from another; built with //... ."""
    ws = tmp_path_factory.mktemp("out_tree") / "ws"
    shutil.copytree(WORKSPACE, ws, ignore=shutil.ignore_patterns("__pycache__", "cache", "out", "more"))
    (ws / "BUILD.models").write_text(ROOT_BUILD)
    (ws / "sub").mkdir()
    (ws / "sub" / "BUILD.models").write_text(SUB_BUILD)
    proc, _ = build(ws, "//...", extra=("-j", "1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {p.relative_to(ws / "out").as_posix() for p in (ws / "out").rglob("*") if p.is_file()} == {
        "a.pt2", "b.pt2", "sub/c.pt2"}
    return ws


def test_out_files_never_share_an_inode_with_the_cas(ws):
    cas = {(p.stat().st_dev, p.stat().st_ino) for p in blobs(ws)}
    for path in (p for p in (ws / "out").rglob("*") if p.is_file()):
        st = path.stat()
        assert (st.st_dev, st.st_ino) not in cas and st.st_nlink == 1, f"{path} is a link into the cache"
        assert stat.S_IMODE(st.st_mode) == 0o444  # read-only, as Bazel leaves its outputs


@pytest.mark.parametrize("keep_mtime", [False, True], ids=["edit", "edit-keeping-size-and-mtime"])
def test_an_edited_output_leaves_the_cache_intact_and_is_restored(ws, keep_mtime):
    artifact = ws / "out" / "a.pt2"
    good = sha(artifact)
    before = artifact.stat()
    with open(artifact, "r+b") as f:  # in place, same size: as an editor saving over it would not
        f.seek(64)
        f.write(b"\0EDITED\0")
    if keep_mtime:  # only ctime, which no one can set, still tells the file changed
        os.utime(artifact, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert sha(artifact) != good and artifact.stat().st_size == before.st_size
    assert_cas_intact(ws)

    proc, events = build(ws, "//...", extra=("-j", "1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert by_status(events, "ran") == set(), "restoring an output runs nothing"
    assert sha(artifact) == good
    assert_cas_intact(ws)


def test_a_tree_keeps_its_executable_bit_and_its_digest(tmp_path):
    """A directory artifact (an .mlpackage, an AOTI source tree) comes out of the CAS with its modes,
    so out/ matches its record and is not rewritten by every build."""
    from buildsys.cache.cas import CAS

    src = tmp_path / "pkg.tree"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (src / "bin" / "run.sh").chmod(0o755)
    (src / "data.txt").write_text("weights\n")
    (src / "empty").mkdir()
    cas = CAS(tmp_path / "cache" / "cas")
    digest = cas.put_tree(src)
    dest = tmp_path / "out" / "pkg.tree"
    cas.materialize(digest, True, dest)
    assert stat.S_IMODE((dest / "bin" / "run.sh").stat().st_mode) == 0o555
    assert stat.S_IMODE((dest / "data.txt").stat().st_mode) == 0o444
    assert (dest / "empty").is_dir()
    assert CAS.tree_digest(dest, lambda p: sha(p)) == digest
    inodes = {p.stat().st_ino for p in (tmp_path / "cache" / "cas").glob("??/*")}
    assert not inodes & {p.stat().st_ino for p in dest.rglob("*") if p.is_file()}
    cas.close()


def test_stale_outputs_are_removed_only_where_the_build_knows_every_target(ws):
    out = ws / "out"
    (out / "notes.txt").write_text("mine, not modelbuild's")  # never placed by a build: never removed
    (ws / "BUILD.models").write_text(ROOT_BUILD.replace('pt2_program(name = "b", model = ":mlp", decompose = "none")\n', ""))
    (ws / "sub" / "BUILD.models").write_text(SUB_BUILD.replace('"c"', '"d"'))

    # A build of one label knows the rest of neither package: it removes nothing.
    proc, _ = build(ws, "//:a", extra=("-j", "1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "b.pt2").exists() and (out / "sub" / "c.pt2").exists()
    assert "stale" not in proc.stdout

    # //:all covers the root package whole: b.pt2 goes, sub/ (not loaded) stays.
    proc, _ = build(ws, "//:all", extra=("-j", "1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (out / "b.pt2").exists() and (out / "sub" / "c.pt2").exists() and (out / "a.pt2").exists()
    assert "stale" in proc.stdout and "b.pt2" in proc.stdout and "c.pt2" not in proc.stdout, proc.stdout

    # A package that is gone is known to declare nothing: a build of any label removes its outputs.
    shutil.rmtree(ws / "sub")
    proc, _ = build(ws, "//:a", extra=("-j", "1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (out / "sub").exists(), "the emptied package directory goes too"
    assert "sub/c.pt2" in proc.stdout, proc.stdout
    assert (out / "notes.txt").read_text() == "mine, not modelbuild's" and (out / "a.pt2").exists()
    assert_cas_intact(ws)


def test_a_build_sweeps_the_idle_out_locks_it_left_in_tmpdir(tmp_path: Path):
    """Each workspace's out/ lock lives in $TMPDIR/modelbuild-<uid>; a build removes those no build has
    opened for a day and nobody holds, so they do not pile up."""
    from filelock import FileLock
    from helpers import run_cli

    tmpdir = tmp_path / "tmp"
    locks = tmpdir / f"modelbuild-{os.getuid()}"
    locks.mkdir(parents=True)
    old, held, fresh = (locks / f"out-{name}.lock" for name in ("old", "held", "fresh"))
    for path in (old, held, fresh):
        path.touch()
    two_days_ago = os.stat(old).st_mtime - 2 * 86_400
    for path in (old, held):
        os.utime(path, (two_days_ago, two_days_ago))
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "WORKSPACE.models").write_text("")
    (ws / "BUILD.models").write_text("")
    with FileLock(held):  # another build writing its out/ right now
        proc = run_cli(ws, "build", "//...", env={"TMPDIR": str(tmpdir)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not old.exists() and held.exists() and fresh.exists()
    assert len(list(locks.glob("out-*.lock"))) == 3  # held, fresh and this build's own

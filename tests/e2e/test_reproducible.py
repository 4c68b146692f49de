"""Every artifact format, built clean twice, in two directories (one nested deeper), each with its
own cache, under another TZ, umask, locale and TMPDIR, comes out byte-identical: nothing of the
build's place, time or process leaks into an artifact. Core ML artifacts get there by replacing
what coremltools and ExecuTorch draw at random or from the clock (rules.coreml.identity,
rules.coreml.payload); the normalized package must still read as the model it was."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers import REPO, action_results, read_events

WORKSPACE = Path(__file__).parents[1] / "workspaces" / "reproducible"
# Every format modelbuild writes, and the artifact of the workspace built in it.
FORMATS = {
    ".pt2, non-strict export": "block_pt2.pt2",
    ".pt2, strict export, core ATen": "pair_pt2.pt2",
    ".pt2, pt2e int8": "block_int8_pt2.pt2",
    ".pte, XNNPACK": "block_xnnpack.pte",
    ".pte, XNNPACK, int4 weights": "block_8da4w.pte",
    ".pte, portable": "block_portable.pte",
    ".pte, Core ML": "block_coreml.pte",
    ".pte, Core ML (float32, iOS16) then XNNPACK": "block_coreml_then_xnnpack.pte",
    ".mlpackage": "block_mlpackage.mlpackage",
    ".mlpackage, linear_quantize()": "block_linear8.mlpackage",
    ".mlpackage, palettize(4)": "block_pal4.mlpackage",
    ".onnx": "block_onnx.onnx",
    "AOTInductor, source": "block_aoti_source.aoti.pt2",
    "AOTInductor, compiled .so": "block_aoti_so.aoti.pt2",
}


def _other_locale() -> str:
    """An installed locale unlike C.UTF-8: German where there is one, else POSIX (ASCII)."""
    installed = subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout.split()
    by_norm = {name.lower().replace("-", ""): name for name in installed}
    return next((by_norm[n] for n in ("de_de.utf8", "fr_fr.utf8", "hi_in.utf8") if n in by_norm), "POSIX")


def _start_build(ws: Path, env: dict[str, str], umask: int) -> subprocess.Popen:
    inherited = {k: v for k, v in os.environ.items()
                 if k not in ("MODELBUILD_CACHE_DIR", "TZ", "LANG", "TMPDIR") and not k.startswith("LC_")}
    return subprocess.Popen(
        [sys.executable, "-m", "modelbuild", "build", "//...", "-j", "1", "--build-events", str(ws / "events.jsonl")],
        cwd=ws, env={**inherited, "COLUMNS": "200", **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, umask=umask,  # not preexec_fn: no Python (and no grpc at-fork hook) before exec
    )


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> list[Path]:
    """The workspace built twice at once, cold, each with its own cache (the default, inside it)."""
    root = tmp_path_factory.mktemp("reproducible")
    setups = [
        ("one", {"TZ": "UTC", "LANG": "C.UTF-8"}, 0o022),
        ("elsewhere/much/deeper/two", {"TZ": "Asia/Kolkata", "LC_ALL": _other_locale()}, 0o077),
    ]
    started = []
    for where, env, umask in setups:
        ws = root / where
        shutil.copytree(WORKSPACE, ws, ignore=shutil.ignore_patterns("__pycache__", "cache", "out"))
        tmp = root / f"tmp-{len(started)}"
        tmp.mkdir()
        started.append((ws, _start_build(ws, {**env, "TMPDIR": str(tmp)}, umask)))
    for ws, proc in started:
        output, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, output
    return [ws for ws, _ in started]


def _files(ws: Path) -> dict[str, tuple[str, int]]:
    """Every file under out/, inside .mlpackage directories too: relative path -> (sha256, mode)."""
    out = ws / "out"
    return {p.relative_to(out).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(p.stat().st_mode))
            for p in sorted(out.rglob("*")) if p.is_file()}


def test_every_format_is_byte_identical(builds):
    from buildsys.cache.cas import CAS
    from buildsys.digests import digest_file

    one, two = (_files(ws) for ws in builds)
    missing = {fmt: name for fmt, name in FORMATS.items() if not (builds[0] / "out" / name).exists()}
    assert not missing, f"not built: {missing}"
    assert any(p.startswith("block_mlpackage.mlpackage/") for p in one), "an .mlpackage is compared file by file"
    differ = sorted(p for p in one.keys() | two.keys() if one.get(p) != two.get(p))
    assert not differ, "differ between the two builds (sha256, mode): " + "; ".join(
        f"{p}: {one.get(p)} vs {two.get(p)}" for p in differ)
    # The engine's digest of a tree (what the cache and a release name it by) agrees too.
    packages = [name for name in FORMATS.values() if name.endswith(".mlpackage")]
    assert [CAS.tree_digest(builds[0] / "out" / p, digest_file) for p in packages] == \
           [CAS.tree_digest(builds[1] / "out" / p, digest_file) for p in packages]


def _uuid_version(text: str) -> int:
    return uuid.UUID(text).version


def test_normalized_mlpackage_reads_as_the_converted_model(builds, tmp_path):
    """The .mlpackage in out/ against coremltools' own save of the same program, converted here:
    the same spec but for the conversion date, the same weights, the same items but for their
    names, which are derived from content (UUID version 5) and not drawn at random."""
    import coremltools as ct

    from buildsys.cache.cas import CAS
    from rules.coreml.identity import CONVERSION_DATE

    ws = builds[0]
    results = action_results(ws, read_events(ws / "events.jsonl"))
    (program,) = results[("decompose", "//:block_mlpackage")].outputs.values()
    raw_path = tmp_path / "raw.mlpackage"
    # In a fresh process, as the worker converted it: coremltools numbers op names with counters
    # global to a process, so this process's earlier conversions would rename the ops.
    convert = (
        "import sys, coremltools as ct\n"
        "from rules.steps.coreml_convert import CoremlConvertConfig, convertible\n"
        "from rules.lib.programs import load_program\n"
        "from rules.coreml.options import coreml_options\n"
        "cfg = CoremlConvertConfig()  # block_mlpackage is declared with the defaults\n"
        "ep, _ = convertible(load_program(sys.argv[1]))\n"
        "ct.convert(ep, **coreml_options(cfg.compute_units, cfg.compute_precision, "
        "cfg.minimum_deployment_target)).save(sys.argv[2])\n"
    )
    proc = subprocess.run([sys.executable, "-c", convert, str(CAS(ws / "cache" / "cas").path(program.digest)), str(raw_path)],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr

    normalized_path = ws / "out" / "block_mlpackage.mlpackage"
    raw = ct.models.MLModel(str(raw_path), skip_model_load=True).get_spec()
    normalized = ct.models.MLModel(str(normalized_path), skip_model_load=True).get_spec()
    assert CONVERSION_DATE in raw.description.metadata.userDefined
    assert CONVERSION_DATE not in normalized.description.metadata.userDefined
    del raw.description.metadata.userDefined[CONVERSION_DATE]
    assert raw == normalized

    weights = "Data/com.apple.CoreML/weights/weight.bin"
    assert (raw_path / weights).read_bytes() == (normalized_path / weights).read_bytes()
    manifests = [json.loads((p / "Manifest.json").read_text()) for p in (raw_path, normalized_path)]
    items = [sorted(m["itemInfoEntries"].values(), key=lambda i: i["path"]) for m in manifests]
    assert items[0] == items[1]
    assert [m["itemInfoEntries"][m["rootModelIdentifier"]]["name"] for m in manifests] == ["model.mlmodel"] * 2
    assert {_uuid_version(i) for i in manifests[1]["itemInfoEntries"]} == {5}
    for name in ("block_linear8", "block_pal4"):  # compressed packages load too, dated no more
        spec = ct.models.MLModel(str(ws / "out" / f"{name}.mlpackage"), skip_model_load=True).get_spec()
        assert CONVERSION_DATE not in spec.description.metadata.userDefined


def _coreml_payloads(pte: Path) -> list[bytes]:
    from executorch.exir._serialize._program import (
        _flatbuffer_to_program,
        _get_extended_header,
    )
    from executorch.exir.schema import DataLocation

    data = pte.read_bytes()
    header = _get_extended_header(data)
    program = _flatbuffer_to_program(data[:header.program_size] if header else data)
    payloads = []
    for delegate in (d for plan in program.execution_plan for d in plan.delegates if d.id == "CoreMLBackend"):
        ref = delegate.processed
        if ref.location == DataLocation.INLINE:
            payloads.append(program.backend_delegate_data[ref.index].data)
        else:
            seg = program.segments[ref.index]
            payloads.append(data[header.segment_base_offset + seg.offset:][:seg.size])
    return payloads


def test_coreml_delegate_payload_is_named_by_content_and_loads(builds, tmp_path):
    """The Core ML module inside a .pte: ExecuTorch's reader unflattens it, its identifier is
    derived from content, and the package in it loads in coremltools without a date."""
    import coremltools as ct
    from executorch.backends.apple.coreml import executorchcoreml

    from rules.coreml.identity import CONVERSION_DATE

    (payload,) = _coreml_payloads(builds[0] / "out" / "block_coreml.pte")
    assert executorchcoreml.unflatten_directory_contents(payload, str(tmp_path))
    module = tmp_path / "lowered_module"
    identifier = json.loads((module / "metadata.json").read_text())["identifier"]
    assert identifier.startswith("executorch_") and _uuid_version(identifier.removeprefix("executorch_")) == 5
    spec = ct.models.MLModel(str(module / "model.mlpackage"), skip_model_load=True).get_spec()
    assert CONVERSION_DATE not in spec.description.metadata.userDefined
    assert [i.name for i in spec.description.input] == ["x"]


def _tree(root: Path, order: list[str]) -> Path:
    """A small directory tree, its entries created in this order."""
    for rel in order:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rel.encode() * 3)
    return root


def test_payload_format_is_executorchs_and_independent_of_directory_order(tmp_path):
    """rules.coreml.payload writes ExecuTorch's flattened-directory format byte for byte (given
    ExecuTorch's own node order, it reproduces ExecuTorch's bytes), and in sorted order, so the
    same tree gives the same bytes however the file system lists it (ExecuTorch's own output
    follows readdir order: on tmpfs, creation order)."""
    from executorch.backends.apple.coreml import executorchcoreml

    from rules.coreml.payload import flatten, parse, serialize

    files = ["metadata.json", "model.mlpackage/Manifest.json", "model.mlpackage/Data/com.apple.CoreML/model.mlmodel",
             "model.mlpackage/Data/com.apple.CoreML/weights/weight.bin", "debug_info.json"]
    base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else tmp_path
    trees = []
    for i, order in enumerate((files, files[::-1])):
        root = Path(os.path.join(base, f"modelbuild-test-{os.getpid()}-{i}", "lowered_module"))
        shutil.rmtree(root.parent, ignore_errors=True)
        trees.append(_tree(root, order))
    try:
        for root in trees:
            theirs = executorchcoreml.flatten_directory_contents(str(root))
            assert serialize(*parse(theirs)) == theirs
        ours = [flatten(root) for root in trees]
        assert ours[0] == ours[1]
        assert executorchcoreml.unflatten_directory_contents(ours[0], str(tmp_path))
        assert sorted(p.relative_to(tmp_path / "lowered_module").as_posix()
                      for p in (tmp_path / "lowered_module").rglob("*") if p.is_file()) == sorted(files)
        for rel in files:
            assert (tmp_path / "lowered_module" / rel).read_bytes() == rel.encode() * 3
    finally:
        for root in trees:
            shutil.rmtree(root.parent, ignore_errors=True)

"""The size report: each artifact's total bytes, its weights and each delegate's payload, checked
against facts read elsewhere (the model's parameter count, the files themselves), in the verify
step's metrics and in `modelbuild show`.

The example workspace (shared session fixture) covers .pt2, XNNPACK, portable and Core ML .pte
and .mlpackage; a workspace with tests/workspaces/steps' MLP adds .onnx, an AOTInductor package
and an int8 .pte.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import REPO, action_results, build, run_cli

from rules.lib.sizes import artifact_sizes

STEPS = REPO / "tests" / "workspaces" / "steps"
MLP_BUILD = """
model(name = "mlp", entry = "models.nets:MLP", inputs = {"x": tensor([4, 64])})
onnx_model(name = "mlp_onnx", model = ":mlp")
aoti_package(name = "mlp_aoti", model = ":mlp", verify = False)  # its check compiles the package: 20 s
executorch_program(name = "mlp_int8", model = ":mlp", backends = ["xnnpack"], quantize = "pt2e_int8_dynamic")
"""


def state_shapes(ws: Path, module: str, name: str) -> list[list[int]]:
    """The shapes of a workspace model's parameters and buffers, read from the model (in a
    subprocess: other workspaces' `models` packages may be imported in this one)."""
    code = f"import json; from {module} import {name}; print(json.dumps([list(t.shape) for t in {name}().state_dict().values()]))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ws, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def numel(shape: list[int]) -> int:
    return math.prod(shape)


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    ws = tmp_path_factory.mktemp("sizes")
    (ws / "WORKSPACE.models").write_text("")
    (ws / "BUILD.models").write_text(MLP_BUILD)
    shutil.copytree(STEPS / "models", ws / "models", ignore=shutil.ignore_patterns("__pycache__"))
    proc, events = build(ws)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ws, events


def test_pte_pt2_and_mlpackage_sizes_match_the_model_and_the_files(example):
    ws, events = example
    out = ws / "out"
    shapes = state_shapes(ws, "models.transformer", "Transformer")
    params, tensors = sum(map(numel, shapes)), len(shapes)
    files = {name: out / f"transformer_{name}" for name in ("pt2.pt2", "xnnpack.pte", "portable.pte", "coreml.pte")}
    sizes = {name: artifact_sizes(path, path.suffix[1:]) for name, path in files.items()}
    pt2, xnnpack, portable, coreml = sizes.values()
    package = out / "transformer_mlpackage.mlpackage"
    mlpackage = artifact_sizes(package, "mlpackage")

    for name, size in sizes.items():
        assert size["total_bytes"] == files[name].stat().st_size, name
    for size in (pt2, xnnpack, portable):
        # float32 weights: 4 bytes a parameter, plus at most the alignment padding of each tensor
        assert 4 * params <= size["constant_bytes"] < 4 * params + 64 * tensors, size

    # XNNPACK: the payload is the XNNPACK graph; the weights sit beside it, in named data
    assert set(xnnpack["delegates"]) == {"XnnpackBackend"} and xnnpack["delegates"]["XnnpackBackend"] > 0
    assert xnnpack["delegate_constant_bytes"] == {}
    assert xnnpack["program_bytes"] + xnnpack["constant_bytes"] + xnnpack["delegates"]["XnnpackBackend"] <= xnnpack["total_bytes"]
    assert portable["delegates"] == {} and portable["constant_bytes"] == xnnpack["constant_bytes"]

    # Core ML: the weights are inside the payload (a whole .mlpackage), in float16 here
    assert set(coreml["delegates"]) == {"CoreMLBackend"}
    assert coreml["delegate_constant_bytes"] == {"CoreMLBackend": coreml["constant_bytes"]}
    assert 2 * params <= coreml["constant_bytes"] < coreml["delegates"]["CoreMLBackend"]

    weight_bin = package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    assert mlpackage["constant_bytes"] == weight_bin.stat().st_size
    assert mlpackage["total_bytes"] == sum(f.stat().st_size for f in package.rglob("*") if f.is_file())
    assert 2 * params <= mlpackage["constant_bytes"] < 4 * params  # float16

    # the verify step reports the same numbers, so they land in the action cache
    results = action_results(ws, events)
    assert results[("verify", "//:transformer_xnnpack")].metrics["verification"]["size"] == xnnpack
    assert results[("verify", "//:transformer_mlpackage")].metrics["verification"]["size"] == mlpackage


def test_show_prints_the_size_report(example):
    ws, _ = example
    size = artifact_sizes(ws / "out" / "transformer_xnnpack.pte", "pte")
    proc = run_cli(ws, "show", "//:transformer_xnnpack")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for what, n in [("total", size["total_bytes"]), ("constants (weights)", size["constant_bytes"]),
                    ("XnnpackBackend payload", size["delegates"]["XnnpackBackend"]), ("program", size["program_bytes"])]:
        # e.g. "constants (weights)  40.1 kB  40,064": human units, then the exact bytes
        row = rf"{re.escape(what)}\s+([\d.]+) (B|kB|MB)\s+{n:,}\s*$"
        found = [m for m in (re.search(row, line) for line in proc.stdout.splitlines()) if m]
        assert len(found) == 1, (what, proc.stdout)
        value, unit = found[0].groups()
        assert float(value) * {"B": 1, "kB": 1e3, "MB": 1e6}[unit] == pytest.approx(n, rel=0.01), found[0].group(0)


def test_onnx_aoti_and_int8_sizes(mlp):
    ws, events = mlp
    out = ws / "out"
    shapes = state_shapes(ws, "models.nets", "MLP")
    params = sum(map(numel, shapes))
    # Every tensor of this MLP is a multiple of 64 bytes in float32, so no format pads it.
    assert all(numel(s) % 16 == 0 for s in shapes)
    matrices = [s for s in shapes if len(s) == 2]
    # int8: a byte per weight-matrix element, and in float32 each bias and one scale per output channel
    int8_bytes = sum(map(numel, matrices)) + 4 * (params - sum(map(numel, matrices)) + sum(s[0] for s in matrices))
    onnx = artifact_sizes(out / "mlp_onnx.onnx", "onnx")
    aoti = artifact_sizes(out / "mlp_aoti.aoti.pt2", "aoti")
    int8 = artifact_sizes(out / "mlp_int8.pte", "pte")
    assert onnx["constant_bytes"] == 4 * params  # the initializers
    assert onnx["total_bytes"] == onnx["constant_bytes"] + onnx["graph_bytes"] == (out / "mlp_onnx.onnx").stat().st_size
    assert aoti["constant_bytes"] == 4 * params  # embedded in the package's weights.o
    with zipfile.ZipFile(out / "mlp_aoti.aoti.pt2") as zf:
        blob = [i.file_size for i in zf.infolist() if i.filename.endswith(".weights.o")]
    assert len(blob) == 1 and 4 * params < blob[0] < 4 * params + 4096  # the blob plus an ELF header
    assert aoti["library_bytes"] == 0  # a source package: no .so yet
    # all in named data, beside the XNNPACK graph
    assert int8["constant_bytes"] == int8_bytes
    assert int8["delegates"]["XnnpackBackend"] > 0 and int8["total_bytes"] == (out / "mlp_int8.pte").stat().st_size
    results = action_results(ws, events)
    assert results[("verify", "//:mlp_onnx")].metrics["verification"]["size"] == onnx


def test_sizes_outside_pte_do_not_import_torch(mlp, example):
    """Cheap for a manifest: only .pte needs executorch's parser (and so torch)."""
    paths = [(mlp[0] / "out" / "mlp_onnx.onnx", "onnx"), (mlp[0] / "out" / "mlp_aoti.aoti.pt2", "aoti"),
             (example[0] / "out" / "transformer_pt2.pt2", "pt2"),
             (example[0] / "out" / "transformer_mlpackage.mlpackage", "mlpackage")]
    code = ("import sys; from rules.lib.sizes import artifact_sizes\n"
            f"for path, fmt in {[(str(p), f) for p, f in paths]!r}: artifact_sizes(path, fmt)\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr

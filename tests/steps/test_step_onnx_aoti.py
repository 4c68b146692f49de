"""Steps `onnx_export` and `aoti`, and the runners the verify step uses.

A tiny two-output model with a keyword input and a dynamic batch is exported once through the
real export step; each artifact is run and compared with the eager model at the example batch
and at another one.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import declared_outputs, step_request

from rules.errors import StepError
from rules.steps.export import ExportConfig
from rules.worker import StepContext

MODULE = "onnx_aoti_tiny"  # unique: the test process imports it
MODEL = '''
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 8)

    def forward(self, x, scale):
        h = torch.relu(self.fc1(x))
        return self.fc2(h) * scale, h.sum(-1)
'''
EXPORT = ExportConfig(
    entry=f"{MODULE}.net:Tiny",
    inputs={"x": {"shape": [4, 16]}},
    keyword_inputs={"scale": {"shape": [1], "fill": "rand", "seed": 3}},
    dynamic_shapes={"x": {0: {"name": "batch", "min": 1, "max": 64}}},
)
ONNX_DIMS = {"x": {0: {"name": "batch", "max": 64}}}
BATCHES = [4, 9]  # the example size, and another within the dim's range


def run_step(module: str, config: dict, inputs: dict, output: str, out_dir: Path, workspace: Path) -> tuple[Path, dict]:
    import importlib

    out_dir.mkdir(parents=True, exist_ok=True)
    request = {
        "module": module, "config": config, "label": "//:t", "inputs": inputs, "outputs": declared_outputs(module, output),
        "out_dir": str(out_dir), "log": str(out_dir / "log.txt"),
    }
    metrics = importlib.import_module(module).run(StepContext(step_request(request), workspace))
    return out_dir / output, metrics


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    (ws / MODULE).mkdir()
    (ws / MODULE / "__init__.py").write_text("")
    (ws / MODULE / "net.py").write_text(textwrap.dedent(MODEL))
    sys.path.insert(0, str(ws))
    yield ws
    sys.path.remove(str(ws))
    for name in [m for m in sys.modules if m == MODULE or m.startswith(MODULE + ".")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def program(workspace) -> Path:
    path, _ = run_step(
        "rules.steps.export", EXPORT.model_dump(mode="json"), {"sources": {"sources": []}}, "program.pt2",
        workspace / "out" / "export", workspace,
    )
    return path


def cases(workspace):
    """(args, kwargs, eager outputs) at each batch size."""
    from rules.lib.modelio import load_model, make_tensor

    model = load_model(workspace, EXPORT.entry, EXPORT.init_seed, None)
    for batch in BATCHES:
        args = (make_tensor(EXPORT.inputs["x"], [batch, 16]),)
        kwargs = {"scale": make_tensor(EXPORT.keyword_inputs["scale"])}
        with torch.no_grad():
            expected = list(model(*args, **kwargs))
        yield args, kwargs, expected


def assert_close(runner, path, workspace, max_err=1e-5, min_snr=100.0):
    from rules.lib.runners import compare

    for args, kwargs, expected in cases(workspace):
        actual = runner(path, args, kwargs)
        assert [tuple(t.shape) for t in actual] == [tuple(t.shape) for t in expected]
        got = compare(expected, actual)
        assert got["max_abs_error"] is not None and got["max_abs_error"] < max_err, got
        assert got["snr_db"] > min_snr, got


# --- metrics -------------------------------------------------------------------------------

def test_snr_and_max_abs_error():
    from rules.lib.runners import SNR_CAP_DB, compare, max_abs_error, snr_db

    ref = torch.tensor([3.0, 4.0], dtype=torch.float64)
    assert snr_db(ref, ref.clone()) == SNR_CAP_DB  # exact: capped, not inf
    assert max_abs_error(ref, ref.clone()) == 0.0
    noisy = ref + torch.tensor([0.0, 0.05], dtype=torch.float64)
    assert snr_db(ref, noisy) == pytest.approx(10 * torch.log10(torch.tensor(25 / 0.0025)).item())
    assert max_abs_error([ref, ref], [ref, noisy]) == pytest.approx(0.05)
    assert snr_db(torch.zeros(2), torch.ones(2)) == -SNR_CAP_DB
    nan = torch.tensor([float("nan"), 1.0])
    assert compare(nan, nan.clone()) == {"max_abs_error": 0.0, "snr_db": SNR_CAP_DB}
    assert compare(nan, torch.ones(2)) == {"max_abs_error": None, "snr_db": -SNR_CAP_DB}
    with pytest.raises(ValueError, match="shape"):
        snr_db(torch.zeros(2), torch.zeros(3))


# --- .pt2 and .pte ----------------------------------------------------------------------------

def test_pt2_runner_matches_eager(program, workspace):
    from rules.lib.runners import run_pt2

    assert_close(run_pt2, program, workspace, max_err=1e-6)


def test_pte_runner_matches_eager(program, workspace):
    from rules.lib.runners import run_pte

    pte, _ = run_step("rules.steps.partition", {"backends": []}, {"program": {"path": str(program)}}, "program.pte",
                      workspace / "out" / "pte", workspace)
    assert_close(run_pte, pte, workspace)


# --- ONNX ----------------------------------------------------------------------------------

def onnx_export(program, workspace, name, **config):
    return run_step("rules.steps.onnx_export", {"dynamic_shapes": ONNX_DIMS, **config}, {"program": {"path": str(program)}},
                    "model.onnx", workspace / "out" / name, workspace)


def test_onnx_matches_eager_at_two_batch_sizes(program, workspace):
    from rules.lib.runners import run_onnx

    path, metrics = onnx_export(program, workspace, "onnx")
    assert metrics["opset"] == 20
    assert metrics["inputs"] == {"x": ["batch", 16], "scale": [1]}  # the dim keeps its declared name
    assert [shape[0] for shape in metrics["outputs"].values()] == ["batch", "batch"]
    assert metrics["bytes"] == path.stat().st_size
    assert_close(run_onnx, path, workspace)


def test_onnx_bytes_do_not_depend_on_process_or_paths(program, workspace):
    first, _ = onnx_export(program, workspace, "onnx_a")
    second, _ = onnx_export(program, workspace, "onnx_b")
    data = first.read_bytes()
    assert data == second.read_bytes()
    # Another process: the exporter's own state (symbol counters, caches) starts afresh.
    here = Path(__file__).resolve().parent
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path[:0] = [{str(here.parents[1])!r}, {str(here.parent / 'support')!r}, {str(here.parents[1] / 'testbed')!r}, {str(here)!r}]
        import test_step_onnx_aoti as t
        t.onnx_export(Path({str(program)!r}), Path({str(workspace)!r}), "onnx_c")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (workspace / "out" / "onnx_c" / "model.onnx").read_bytes() == data
    # Stack traces stay, with paths relative to the workspace and site-packages, and the user's
    # frames without line numbers (the program's, from export: a comment edit changes no byte).
    assert str(workspace).encode() not in data
    assert b'File "/' not in data and b"site-packages" not in data
    assert f'File "{MODULE}/net.py", in forward'.encode() in data
    assert f'File "{MODULE}/net.py", line'.encode() not in data


def test_onnx_strip_metadata(program, workspace):
    import onnx

    path, metrics = onnx_export(program, workspace, "onnx_bare", strip_metadata=True, opset=18)
    model = onnx.load(str(path))
    assert metrics["opset"] == 18
    assert all(len(n.metadata_props) == 0 for n in model.graph.node)
    assert b"stack_trace" not in path.read_bytes()


def test_onnx_unknown_input_in_dynamic_shapes(program, workspace):
    with pytest.raises(StepError, match=r"names input 'y', but the ONNX model's inputs are \(x, scale\)"):
        onnx_export(program, workspace, "onnx_bad", dynamic_shapes={"y": {0: {"name": "batch", "max": 64}}})


# --- AOTInductor ---------------------------------------------------------------------------

def aoti(program, workspace, name, **config):
    return run_step("rules.steps.aoti", config, {"program": {"path": str(program)}}, "model.pt2",
                    workspace / "out" / name, workspace)


def test_aoti_source_package_is_reproducible(program, workspace):
    first, metrics = aoti(program, workspace, "aoti_src_a")
    second, _ = aoti(program, workspace, "aoti_src_b")
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    assert metrics["compiled"] is False and metrics["so_bytes"] == 0
    with zipfile.ZipFile(first) as zf:
        names = zf.namelist()
    assert any(n.endswith(".wrapper.cpp") for n in names) and not any(n.endswith(".so") for n in names)
    assert all(n.startswith("model/") for n in names)  # the zip's folder is the output's stem


@pytest.mark.slow  # builds a .so with g++: 10-16 s on 2 cores; one small model only
def test_aoti_compiled_matches_eager(program, workspace):
    from rules.lib.runners import run_aoti

    path, metrics = aoti(program, workspace, "aoti_so", compile=True)
    assert metrics["compiled"] is True and metrics["so_bytes"] > 0
    assert_close(run_aoti, path, workspace)


def test_an_onnx_exporter_failure_names_the_node_and_the_workaround(tmp_path: Path):
    """The exporter cannot translate 2-D scaled_dot_product_attention (the example Transformer)."""
    from helpers import build, copy_example

    ws = copy_example(tmp_path)
    (ws / "models" / "vision" / "BUILD.models").unlink()
    (ws / "BUILD.models").write_text(
        'model(name = "transformer", entry = "models.transformer:Transformer", inputs = {"embedding": tensor([2, 32])})\n'
        'onnx_model(name = "transformer_onnx", model = ":transformer")\n')
    proc, events = build(ws, extra=("-j", "1"))
    assert proc.returncode == 1
    error = next(e["error"] for e in events if e["status"] == "failed")
    assert error.startswith("the onnx_export step failed at node 'scaled_dot_product_attention'"), error
    assert 'workaround: decompose = "core_aten"' in error and "Traceback" not in proc.stdout
    assert "full log:" in proc.stdout

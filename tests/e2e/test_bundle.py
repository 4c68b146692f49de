"""Step `bundle`: a built .pte and its verification cases as an ExecuTorch BundledProgram (.bpte).

A tiny two-output model with a dynamic batch (tests/workspaces/bundle) is built through the CLI
as XNNPACK, portable, int8 XNNPACK and Core ML programs; the bundle step runs on each for real,
through the worker, and XNNPACK and portable bundles are checked in ExecuTorch's bundled-program
runtime.
"""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO, build, run_step_request

from rules.steps.bundle import (
    BundleCase,
    bundle_tolerance,
    check_bundle,
    make_bundle,
    read_bundle,
    reference_outputs,
)
from rules.steps.verify import Tolerance

WORKSPACE = Path(__file__).parents[1] / "workspaces" / "bundle"
MODEL = {  # as tests/workspaces/bundle/BUILD.models declares :heads
    "entry": "bundle_models.nets:TwoHeads", "inputs": {"x": {"shape": [4, 16]}},
    "dynamic_shapes": {"x": {0: {"name": "batch", "min": 1, "max": 8}}},
}
CASES = {"example": [4, 16], "min (batch=1)": [1, 16], "max (batch=8)": [8, 16]}


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("bundle")
    shutil.copytree(WORKSPACE, ws, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "cache", "out"))
    proc, _ = build(ws, extra=("-j", "2"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield ws
    for name in [m for m in sys.modules if m.split(".")[0] == "bundle_models"]:
        del sys.modules[name]
    if str(ws) in sys.path:
        sys.path.remove(str(ws))


def request(ws: Path, target: str, out: Path, check: bool = True, tolerance: dict | None = None,
            model: dict = MODEL) -> dict:
    """A request's fields, as the scheduler sends them (helpers.step_request types them)."""
    out.mkdir(parents=True, exist_ok=True)
    config = {"model": model, "cases": ["example", "min", "max"], "check": check,
              "tolerance": tolerance or {"min_snr_db": 60.0, "max_abs_error": None}}
    return {
        "action": target, "step": "bundle", "module": "rules.steps.bundle", "label": f"//:{target}", "config": config,
        "inputs": {"program": {"path": str(ws / "out" / f"{target}.pte")},
                   "sources": {"sources": [["bundle_models/nets.py", "0" * 64]]}},
        "outputs": ["program.bpte"], "out_dir": str(out), "log": str(out / "log.txt"),
    }


def bundle(ws: Path, target: str, out: Path, **kw) -> dict:
    reply = run_step_request(request(ws, target, out, **kw), ws)
    assert reply["ok"], reply.get("error")
    return reply["metrics"]["bundle"]


@pytest.fixture(scope="module")
def xnnpack(ws, tmp_path_factory):
    """The XNNPACK program's bundle: its report and bytes, and the same step in another process
    (started first, so the two run side by side)."""
    other = tmp_path_factory.mktemp("xnnpack_other")
    script = ("import json, sys; sys.path[:0] = ['tests/support', 'testbed']; from pathlib import Path; from helpers import run_step_request; "
              "r = run_step_request(json.loads(sys.argv[1]), Path(sys.argv[2])); assert r['ok'], r")
    req = json.dumps(request(ws, "heads_xnnpack", other))
    proc = subprocess.Popen([sys.executable, "-c", script, req, str(ws)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = tmp_path_factory.mktemp("xnnpack")
    report = bundle(ws, "heads_xnnpack", out)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output[-2000:]
    return report, (out / "program.bpte").read_bytes(), (other / "program.bpte").read_bytes()


def test_xnnpack_bundle_passes_in_the_runtime_at_example_min_and_max(ws, xnnpack):
    report, bpte, _ = xnnpack
    assert report["checked"] and report["passed"] is True
    assert [(c["name"], c["inputs"]["x"]) for c in report["cases"]] == list(CASES.items())
    assert all(c["passed"] and c["max_abs_error"] < 1e-5 for c in report["cases"])
    assert report["reference"] == "float64"
    assert report["rtol"] == pytest.approx(1e-3)  # 60 dB
    assert report["atol"] == pytest.approx(16e-3 * report["reference_rms"])
    # What the .bpte holds: the very program, and each case's inputs and two expected outputs.
    program, cases = read_bundle(bpte)
    assert program == (ws / "out" / "heads_xnnpack.pte").read_bytes()
    assert [list(c.inputs[0].shape) for c in cases] == list(CASES.values())
    assert [[list(t.shape) for t in c.expected] for c in cases] == [[[b, 8], [b, 1]] for b in (4, 1, 8)]
    assert check_bundle(bpte, report["rtol"], report["atol"]) == []


def test_wrong_expected_outputs_fail_the_check_naming_case_and_output(ws, xnnpack):
    report, bpte, _ = xnnpack
    program, cases = read_bundle(bpte)
    wrong = cases[2].expected[1].clone()
    wrong[3, 0] += 0.25
    cases[2] = BundleCase(cases[2].name, cases[2].inputs, [cases[2].expected[0], wrong])
    failures = check_bundle(make_bundle(program, cases), report["rtol"], report["atol"], names=list(CASES))
    assert len(failures) == 1, failures
    assert failures[0].startswith("case 'max (batch=8)', output 1: max abs error 0.25 exceeds the tolerance")
    assert "1 of 8 elements over" in failures[0]
    # Static int8's 20 dB still rejects outputs of the right scale, but for other inputs.
    loose = bundle_tolerance(Tolerance(min_snr_db=20.0), report["reference_rms"])
    _, cases = read_bundle(bpte)
    swapped = [BundleCase(c.name, c.inputs, [t.roll(1, dims=0) for t in c.expected]) for c in cases[::2]]
    failures = check_bundle(make_bundle(program, swapped), loose["rtol"], loose["atol"])
    assert {f.split(",")[0] for f in failures} == {"case 0", "case 1"}, failures


def test_a_check_the_program_misses_fails_the_step_with_the_tolerance(ws, tmp_path):
    reply = run_step_request(request(ws, "heads_xnnpack", tmp_path, tolerance={"max_abs_error": 1e-12}), ws)
    assert not reply["ok"] and not reply["show_log"]  # a StepError: the message stands alone
    error = reply["error"]
    assert error.startswith("the bundled check failed in ExecuTorch's bundled-program runtime (max_abs_error 1e-12)")
    assert "case 'example', output 0: max abs error" in error and "case 'max (batch=8)', output 1" in error


def test_cases_beyond_the_programs_plan_are_refused(ws, tmp_path):
    wider = {**MODEL, "dynamic_shapes": {"x": {0: {"name": "batch", "min": 1, "max": 32}}}}
    reply = run_step_request(request(ws, "heads_xnnpack", tmp_path, model=wider), ws)
    assert not reply["ok"]
    assert "max (batch=32): input 0 has shape [32, 16]; the program is planned for at most [8, 16]" in reply["error"]


def test_portable_and_int8_programs_pass_with_their_tolerances(ws, tmp_path):
    portable = bundle(ws, "heads_portable", tmp_path / "portable")
    assert portable["passed"] is True and portable["max_abs_error"] < 1e-5
    int8 = bundle(ws, "heads_int8", tmp_path / "int8", tolerance={"min_snr_db": 30.0})
    assert int8["passed"] is True and len(int8["cases"]) == 3
    assert int8["rtol"] == pytest.approx(10 ** (-30 / 20))
    # The quantized program's real error sits well inside the bound derived from 30 dB.
    assert 1e-4 < int8["max_abs_error"] < int8["atol"] / 3


def test_the_bpte_is_byte_identical_across_processes(xnnpack):
    _, bpte, other = xnnpack
    assert other == bpte


def test_a_coreml_program_is_bundled_for_the_device_not_checked(ws, tmp_path):
    report = bundle(ws, "heads_coreml", tmp_path, check=False)
    assert report["checked"] is False and report["passed"] is None and report["max_abs_error"] is None
    assert "needs the device" in report["note"]
    assert report["rtol"] == pytest.approx(1e-3) and report["atol"] > 0  # what the device lab runs it with
    program, cases = read_bundle((tmp_path / "program.bpte").read_bytes())
    assert program == (ws / "out" / "heads_coreml.pte").read_bytes()
    assert [list(c.inputs[0].shape) for c in cases] == list(CASES.values())


def test_tolerances_derive_from_the_artifacts():
    exact = bundle_tolerance(Tolerance(max_abs_error=0.01), 2.0)
    assert exact == {"rtol": 0.0, "atol": 0.01, "basis": "max_abs_error 0.01"}
    snr20 = bundle_tolerance(Tolerance(min_snr_db=20.0), 2.0)
    assert (snr20["rtol"], snr20["atol"]) == (pytest.approx(0.1), pytest.approx(16 * 0.1 * 2.0))


class _MixedDtypes(torch.nn.Module):
    def forward(self, x):
        return x @ torch.ones(16, 4)  # a float32 constant: the model cannot run in float64


def test_expected_values_come_from_float64_unless_the_model_cannot_run_there(ws):
    from rules.lib.modelio import load_model

    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    model = load_model(ws, MODEL["entry"], 0, None)
    with torch.no_grad():
        single = model(x)
    (outputs,), precision = reference_outputs(model, [((x,), {})])
    assert precision == "float64" and [t.dtype for t in outputs] == [torch.float32, torch.float32]
    assert all(torch.allclose(o, s, atol=1e-6) for o, s in zip(outputs, single))
    (outputs,), precision = reference_outputs(_MixedDtypes(), [((x,), {})])
    assert precision == "float32" and torch.equal(outputs[0], x @ torch.ones(16, 4))
    assert math.isfinite(float(outputs[0].sum()))

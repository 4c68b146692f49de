"""Delegation that delegates little is reported and warned about; a check states the scale of the
eager outputs it compared against; token inputs take low/high; a target picks its verification
cases and the report says what each cost. Built through the CLI on small real models
(tests/workspaces/checks)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, action_results, build, run_cli

WORKSPACE = Path(__file__).parents[1] / "workspaces" / "checks"


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    ws = tmp_path_factory.mktemp("checks")
    shutil.copytree(WORKSPACE, ws, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    proc, events = build(ws, extra=("--keep-going", "-j", "2"))
    results = action_results(ws, events)
    failed = {(e["step"], e["label"]): e.get("error", "") for e in events if e["status"] == "failed"}
    return ws, proc, results, failed


def metrics(results, step: str, label: str) -> dict:
    """What the step reported: its metrics, and its warnings (a field of the record) under "warnings"."""
    return results[(step, label)].reported()


def test_only_the_vanishing_int8_check_fails(checks):
    _, proc, _, failed = checks
    assert proc.returncode == 1
    assert set(failed) == {("verify", "//:vanishing_int8")}, failed


def test_bert_delegation_shares_and_warning(checks):
    _, proc, results, _ = checks
    found = metrics(results, "partition", "//:bert_xnnpack")
    summary = found["delegation"]
    ops, compute = summary["ops"], summary["compute_ops"]
    assert ops["total"] == ops["delegated"] + sum(summary["portable"].values())
    assert ops["delegated"] == sum(summary["delegated"].values()) > 0
    assert ops["share"] == round(ops["delegated"] / ops["total"], 3) < 0.5
    # Every linear and attention matmul is on XNNPACK; layer norms, embeddings and masks are not.
    assert compute["total"] >= 7 and compute["share"] == 1.0 and compute["portable"] == {}
    assert summary["portable"]["aten.native_layer_norm.default"] == 3
    assert summary["portable"]["aten.embedding.default"] == 3
    assert summary["delegate_calls"] > 1
    [warning] = found["warnings"]
    assert re.match(rf"only {ops['delegated']} of {ops['total']} ops \(\d+%\) are delegated to xnnpack", warning)
    assert "aten.embedding.default x3" in warning and "delegate calls" in warning
    assert "WARNING: //:bert_xnnpack (partition): only" in " ".join(proc.stdout.split())


def test_weight_only_on_xnnpack_warns_that_its_matmuls_fell_back(checks):
    _, _, results, _ = checks
    found = metrics(results, "partition", "//:mlp_weight_only_xnnpack")
    compute = found["delegation"]["compute_ops"]
    assert compute == {"delegated": 0, "total": 2, "share": 0.0, "portable": {"aten.mm.default": 2}}
    [warning] = found["warnings"]
    assert warning.startswith("2 of 2 compute-bearing ops run on portable kernels, not on xnnpack: aten.mm.default x2")
    assert "(XNNPACK: Expected weight to be a static param)" in warning  # the partitioner's own reason
    assert "torchao_int8_weight_only" in warning and '"torchao_int8_dynact_int8w"' in warning
    # No delegate asked for: the same program on portable kernels is as declared, no warning.
    portable = metrics(results, "partition", "//:mlp_weight_only_portable")
    assert "warnings" not in portable and portable["delegation"]["compute_ops"]["share"] == 0.0


def test_a_failure_on_vanishing_outputs_says_so(checks):
    _, _, _, failed = checks
    message = failed[("verify", "//:vanishing_int8")]
    first = re.search(r"example: SNR (\S+) dB is below the required 20 dB \(max abs error (\S+); "
                      r"eager outputs: RMS (\S+), max \|x\| (\S+)\)", message)
    assert first, message
    assert 1e-23 < float(first.group(3)) < 1e-19 and 1e-23 < float(first.group(4)) < 1e-19
    assert re.search(r"example: the eager outputs themselves are ~1e-2\d: the model's outputs vanish", message)
    assert "too small for a meaningful comparison" in message and "load trained weights" in message


def test_a_pass_on_vanishing_outputs_warns(checks):
    _, _, results, _ = checks
    found = metrics(results, "verify", "//:vanishing_fp32")
    [case] = found["verification"]["cases"]
    assert case["snr_db"] >= 60 and case["reference_rms"] < 1e-19 and case["reference_max_abs"] < 1e-19
    [warning] = found["warnings"]
    assert warning.startswith("the check passed, but the eager outputs are ~1e-2")
    assert "(example)" in warning and "load trained weights" in warning
    # A model with outputs of ordinary size: its scale is reported and nothing is said about it.
    bert = metrics(results, "verify", "//:bert_xnnpack")
    assert "warnings" not in bert
    assert all(0.1 < c["reference_rms"] < 10 for c in bert["verification"]["cases"])


def test_token_ids_are_drawn_from_low_to_high(checks):
    _, _, results, _ = checks
    # Tokens returns its ids as floats: the reference's max is the largest id drawn.
    for case in metrics(results, "verify", "//:tokens_pt2")["verification"]["cases"]:
        assert 90 <= case["reference_max_abs"] < 100 and case["reference_rms"] > 50, case
    # BERT's ids go up to its vocabulary (100): the export and every check ran on them.
    assert len(metrics(results, "verify", "//:bert_xnnpack")["verification"]["cases"]) == 3


def test_calibration_draws_token_ids_from_low_to_high():
    from rules.steps.export import ExportConfig
    from rules.steps.quantize import QuantizeConfig, calibration_samples
    from rules.values import TensorSpec

    spec = TensorSpec(shape=[1, 64], dtype="int64", fill="randint", low=20, high=100)
    cfg = QuantizeConfig(export=ExportConfig(entry="m:M", inputs={"ids": spec}), scheme="pt2e_int8_static")
    ids = [args[0] for args, _ in calibration_samples(Path("."), cfg)]
    assert len(ids) == 8 and len({tuple(t.flatten().tolist()) for t in ids}) == 8
    assert min(int(t.min()) for t in ids) >= 20 and max(int(t.max()) for t in ids) >= 90
    assert max(int(t.max()) for t in ids) < 100


def test_verify_cases_pick_the_cases_and_each_is_timed(checks):
    _, _, results, _ = checks
    full = metrics(results, "verify", "//:tokens_pt2")["verification"]
    # The min's shapes are the example's: the same inputs are not run twice.
    assert [c["case"] for c in full["cases"]] == ["example", "max (seq=16)"]
    assert full["repeated"] == [{"case": "min (seq=8)", "same_as": "example"}]
    only = metrics(results, "verify", "//:tokens_max_only")["verification"]
    assert [c["case"] for c in only["cases"]] == ["max (seq=16)"] and "repeated" not in only
    for report in (full, only, metrics(results, "verify", "//:bert_xnnpack")["verification"]):
        for case in report["cases"]:
            assert 0 <= case["artifact_seconds"] <= case["seconds"] < 60, case
    assert all(c["seconds"] > 0 for c in metrics(results, "verify", "//:bert_xnnpack")["verification"]["cases"])


def test_show_renders_the_new_metrics(checks):
    ws, _, _, _ = checks
    proc = run_cli(ws, "show", "//:bert_xnnpack")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "delegated to XnnpackBackend" in proc.stdout


BAD = {
    "low_not_below_high": ('tensor([1, 8], dtype = "int64", fill = "randint", low = 5, high = 5)',
                           r"low \(5\) must be below high \(5\)"),
    "low_above_default_high": ('tensor([1, 8], dtype = "int64", low = 50)',
                               r"low \(50\) must be below high \(10\) \(high defaults to 10\)"),
    "high_for_a_float_fill": ('tensor([1, 8], high = 100)', r'applies to integer draws: use fill = "randint"'),
    "high_with_zeros": ('tensor([1, 8], dtype = "int64", fill = "zeros", high = 100)', r'no effect with fill = "zeros"'),
    "high_beyond_dtype": ('tensor([1, 8], dtype = "int8", high = 200)', r"\[0, 200\) does not fit int8"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_low_high_is_rejected_at_load_time(tmp_path: Path, case: str):
    tensor, message = BAD[case]
    (tmp_path / "WORKSPACE.models").write_text("")
    (tmp_path / "BUILD.models").write_text(f'# tokens\n\nmodel(name = "m", entry = "models.nets:Tokens",\n'
                                           f'      inputs = {{"ids": {tensor}}})\n')
    proc = run_cli(tmp_path, "query", "//...")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(r"BUILD\.models:3\b.*field 'inputs\.ids'", proc.stderr), proc.stderr
    assert re.search(message, proc.stderr), proc.stderr


BAD_CASES = {
    "unknown_case": ('verify_cases = ["example", "maximum"]', r"field 'verify_cases\[1\]': 'maximum' is not allowed "
                                                           r"\(did you mean 'max'\?\); allowed: example, min, max"),
    "no_case": ("verify_cases = []", r"name at least one of example, min, max, or set verify = False"),
    "twice": ('verify_cases = ["max", "max"]', r"names a case twice"),
    "no_dynamic_dims": ('verify_cases = ["max"]', r"verify_cases names 'max', but :fixed has no dynamic dims"),
    "not_verified": ('verify = False, verify_cases = ["example"]', r"verify_cases has no effect with verify = False"),
    "structural_only": ('backends = [coreml()], verify_cases = ["example"]',
                        r"verify_cases has no effect here: this artifact cannot run on Linux"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_verify_cases_are_rejected(tmp_path: Path, case: str):
    options, message = BAD_CASES[case]
    (tmp_path / "WORKSPACE.models").write_text("")
    (tmp_path / "BUILD.models").write_text(
        'model(name = "fixed", entry = "models.nets:Tokens", inputs = {"ids": tensor([2, 8], dtype = "int64")})\n'
        f'executorch_program(name = "e", model = ":fixed", {options})\n'
    )
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("")
    shutil.copy(WORKSPACE / "models" / "nets.py", tmp_path / "models" / "nets.py")
    proc = run_cli(tmp_path, "build", "//...")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(r"BUILD\.models:2\b", proc.stderr), proc.stderr
    assert re.search(message, " ".join(proc.stderr.split())), proc.stderr


def test_a_program_loads_in_a_process_that_never_built_its_model(checks):
    """BERT's outputs are a transformers ModelOutput, which torch reads back only once transformers
    registered it with pytree. A worker that did not export the program (the other worker at -j 2,
    or any worker after an export cache hit) must load it all the same."""
    ws, _, results, _ = checks
    program = results[("export", "//:bert_xnnpack")].outputs["program.pt2"]
    blob = ws / "cache" / "cas" / program.digest[:2] / program.digest[2:]
    code = ("import sys; from rules.lib.programs import load_program\n"
            "assert 'transformers' not in sys.modules\n"
            "load_program(sys.argv[1]); print('loaded')")
    proc = subprocess.run([sys.executable, "-c", code, str(blob)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "loaded", proc.stderr[-3000:]

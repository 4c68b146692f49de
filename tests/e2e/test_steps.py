"""Every step option on small real models, built through the CLI with --keep-going; every
artifact loads in its runtime; both toolchain hazards fail their verification, saying why."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import REPO, action_results, build, run_cli

WORKSPACE = Path(__file__).parents[1] / "workspaces" / "steps"
EXPECTED_FAILURES = {
    "//:hazard_weight_only_xnnpack", "//:hazard_batch_cap_xnnpack", "//:branchy_pt2", "//:branchy_strict_pt2",
}


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    ws = tmp_path_factory.mktemp("steps")
    shutil.copytree(WORKSPACE, ws, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("layers.py", "transformer.py"):  # the example workspace's Transformer
        shutil.copy(REPO / "models" / name, ws / "models" / name)
    proc, events = build(ws, extra=("--keep-going",))
    results = action_results(ws, events)
    return ws, proc, events, results


def out(ws: Path, name: str, ext: str) -> Path:
    return ws / "out" / f"{name}{ext}"


def verification(results, label: str) -> dict:
    return results[("verify", label)].metrics["verification"]


def test_only_the_hazards_and_bad_exports_fail(steps):
    ws, proc, events, _ = steps
    assert proc.returncode == 1
    failed_targets = {l for l in EXPECTED_FAILURES if f"{l}" in proc.stdout.split("Build failed:")[-1]}
    assert failed_targets == EXPECTED_FAILURES, proc.stdout[-3000:]
    assert f"{len(EXPECTED_FAILURES)} of" in proc.stdout.split("Build failed:")[-1]
    # A target that fails verification is not placed in out/.
    assert not out(ws, "hazard_weight_only_xnnpack", ".pte").exists()
    assert not out(ws, "hazard_batch_cap_xnnpack", ".pte").exists()


def test_weight_only_hazard_is_caught_by_verification(steps):
    _, proc, events, _ = steps
    failed = {(e["step"], e["label"]): e.get("error", "") for e in events if e["status"] == "failed"}
    message = failed[("verify", "//:hazard_weight_only_xnnpack")]
    assert "verification failed against the eager model" in message
    assert "torchao weight-only" in message and "SNR -" in message


def test_batch_cap_hazard_is_caught_and_the_fix_works(steps):
    _, proc, events, results = steps
    failed = {(e["step"], e["label"]): e.get("error", "") for e in events if e["status"] == "failed"}
    message = failed[("verify", "//:hazard_batch_cap_xnnpack")]
    assert "planned for at most [15, 3, 16, 16]" in message and "need [32, 3, 16, 16]" in message
    assert "example size of at least 16" in message
    # With an example batch of 16, the same model runs at its declared max.
    cases = {c["case"]: c for c in verification(results, "//:batch16_xnnpack")["cases"]}
    assert cases["max (n=32)"]["shapes"] == {"x": [32, 3, 16, 16]} and cases["max (n=32)"]["snr_db"] > 60


def test_export_failures_show_the_source_line_and_the_fix(steps):
    _, proc, events, _ = steps
    failed = {(e["step"], e["label"]): e.get("error", "") for e in events if e["status"] == "failed"}
    nonstrict = failed[("export", "//:branchy_pt2")]
    assert 'models/nets.py", line' in nonstrict and "if x.sum() > 0:" in nonstrict
    assert "torch.cond" in nonstrict and "strict = True" in nonstrict
    strict = failed[("export", "//:branchy_strict_pt2")]
    assert "Data-dependent branching" in strict and "if x.sum() > 0:" in strict
    assert "draft_export report:" in strict and "torch._check" in strict


def test_float_artifacts_match_eager_at_example_min_and_max(steps):
    _, _, _, results = steps
    for label in ["//:pair_pt2", "//:pair_xnnpack", "//:mlp_fp32", "//:mlp_portable", "//:mlp_core_aten",
                  "//:mlp_high_level", "//:mlp_keep_linear", "//:mlp_onnx", "//:pair_onnx", "//:mlp_aoti_source",
                  "//:mlp_aoti_so"]:
        report = verification(results, label)
        assert report["numeric"], label
        names = [c["case"] for c in report["cases"]]
        assert names[0] == "example" and names[1].startswith("min (") and names[2].startswith("max ("), (label, names)
        assert all(c["snr_db"] >= 60 for c in report["cases"]), (label, report["cases"])
    # Dims shared across inputs move together.
    pair = {c["case"]: c["shapes"] for c in verification(results, "//:pair_pt2")["cases"]}
    assert pair["max (batch=16)"] == {"x": [16, 8], "y": [16, 8]}


def test_decomposition_tables(steps):
    import torch

    ws, _, _, _ = steps

    def ops(name):
        ep = torch.export.load(out(ws, name, ".pt2"))
        return {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}

    assert "aten.linear.default" in ops("mlp_high_level")  # {}: high-level ops kept
    assert "aten.linear.default" not in ops("mlp_core_aten")  # core ATen: linear -> addmm
    assert "aten.addmm.default" in ops("mlp_core_aten")
    assert "aten.linear.default" in ops("mlp_keep_linear")  # core ATen, but linear kept


def test_quantized_programs_are_smaller_and_close_enough(steps):
    ws, _, _, results = steps
    fp32 = out(ws, "mlp_fp32", ".pte").stat().st_size
    floors = {"mlp_pt2e_static": 20, "mlp_pt2e_static_random": 20, "mlp_pt2e_dynamic": 30,
              "mlp_pt2e_dynamic_portable": 30, "mlp_8da4w": 15, "mlp_8da8w": 30, "mlp_int8_weight_only": 30}
    for name, floor in floors.items():
        size = out(ws, name, ".pte").stat().st_size
        assert size < 0.6 * fp32, (name, size, fp32)
        snrs = [c["snr_db"] for c in verification(results, f"//:{name}")["cases"]]
        assert min(snrs) >= floor, (name, snrs)
    assert results[("quantize", "//:mlp_pt2e_static")].metrics["calibration_samples"] == 8  # from the .npz
    assert results[("quantize", "//:mlp_pt2e_static_random")].metrics["calibration_samples"] == 16


def test_delegation_summary_per_backend(steps):
    _, _, _, results = steps

    def delegated(label):
        return results[("partition", label)].metrics["delegation"]["delegated"]

    assert delegated("//:mlp_fp32").get("XnnpackBackend", 0) > 0
    assert delegated("//:mlp_portable") == {}
    assert delegated("//:cnn_coreml").get("CoreMLBackend", 0) > 0
    assert delegated("//:cnn_mps").get("MPSBackend", 0) > 0
    assert delegated("//:cnn_vulkan").get("VulkanBackend", 0) > 0
    # Priority order decides who takes the graph.
    assert set(delegated("//:cnn_coreml_then_xnnpack")) == {"CoreMLBackend"}
    split = delegated("//:transformer_xnnpack_then_mps")  # XNNPACK first, MPS takes what it left
    assert split["XnnpackBackend"] > 0 and split["MPSBackend"] > 0, split


def test_device_only_artifacts_get_a_structural_check_that_says_so(steps):
    _, _, _, results = steps
    for label in ["//:cnn_coreml", "//:cnn_mps", "//:cnn_vulkan", "//:mlp_mlpackage", "//:transformer_xnnpack_then_mps"]:
        report = verification(results, label)
        assert report["numeric"] is False and "needs" in report["note"], label
    assert verification(results, "//:cnn_mps")["delegates"] == ["MPSBackend"]


def test_coreml_compression_is_checked_with_decompressed_weights(steps):
    ws, _, _, results = steps
    snr = {}
    for bits, name in [(2, "mlp_pal2"), (4, "mlp_pal4"), (6, "mlp_pal6"), (8, "mlp_pal8"), ("int8", "mlp_linear8")]:
        compressed = results[("coreml_compress", f"//:{name}")].metrics
        assert compressed["weight_bin_ratio"] < 0.7, (name, compressed)
        weights = verification(results, f"//:{name}")["compressed_weights"]
        assert weights["complete"], weights
        snr[bits] = weights["snr_db"]
    assert snr[2] < snr[4] < snr[6] < snr[8] and snr["int8"] > 30, snr


def test_every_artifact_loads_in_its_runtime(steps):
    import coremltools as ct
    import executorch.kernels.quantized  # noqa: F401  (the kernels a quantized program needs)
    import onnxruntime
    import torch
    from executorch.runtime import Runtime

    from buildsys.load.target_graph import TargetGraph
    from buildsys.load.workspace import Workspace
    from rules import RULESET

    ws, _, _, _ = steps
    graph = TargetGraph(Workspace(ws), RULESET)
    artifacts = {str(l) for l in graph.expand(["//..."]) if graph.targets[l].kind != "model"}
    files = sorted(p for p in (ws / "out").iterdir())
    assert len(files) == len(artifacts - EXPECTED_FAILURES) == 31, [p.name for p in files]
    for path in files:
        if path.suffix == ".pte":
            program = Runtime.get().load_program(str(path))
            assert "forward" in program.method_names
            if not any(k in path.name for k in ("coreml", "mps", "vulkan")):
                program.load_method("forward")
        elif path.name.endswith(".aoti.pt2"):
            if "so" in path.name:  # a source package would be compiled again here; verify did that
                torch._inductor.aoti_load_package(str(path))
        elif path.suffix == ".pt2":
            torch.export.load(path)
        elif path.suffix == ".onnx":
            onnxruntime.InferenceSession(str(path))
        elif path.suffix == ".mlpackage":
            ct.models.MLModel(str(path), skip_model_load=True)
        else:
            raise AssertionError(f"unexpected artifact {path}")


def test_show_displays_metrics(steps):
    ws, _, _, _ = steps
    proc = run_cli(ws, "show", "//:mlp_pt2e_dynamic")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verification against eager" in proc.stdout and "max (batch=8)" in proc.stdout
    assert "delegated to XnnpackBackend" in proc.stdout and "quantize: cached" in proc.stdout
    proc = run_cli(ws, "show", "//:mlp_pal4")
    assert "compressed weights loaded into the torch model" in proc.stdout
    proc = run_cli(ws, "show", "//:hazard_batch_cap_xnnpack")
    assert proc.returncode == 1 and "not in out/: its checks have not passed" in proc.stdout
    assert "verify: failed with these inputs" in proc.stdout
    assert "planned for at most [15, 3, 16, 16]" in proc.stdout

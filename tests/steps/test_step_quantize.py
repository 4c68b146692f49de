"""Step `quantize`, driven for real through the worker: quantize tiny models with every scheme,
lower the .pt2 with the `partition` step, run the .pte in the ExecuTorch runtime, and compare
with the eager fp32 model (SNR in dB)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import declared_outputs, run_step_request
from pydantic import ValidationError

from rules.steps.quantize import QuantizeConfig

MODELS_PY = '''import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.fc2 = nn.Linear(128, 64)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32, 64)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


class Ragged(nn.Module):  # fc1's 48 inputs are not a multiple of 32
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(48, 64)
        self.fc2 = nn.Linear(64, 16)

    def forward(self, x):
        return self.fc2(self.fc1(x))


class Narrow(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(48, 8)

    def forward(self, x):
        return self.fc(x)
'''

MODULE = "qtest_models"
MLP = {
    "entry": f"{MODULE}:MLP",
    "inputs": {"x": {"shape": [4, 64]}},
    "dynamic_shapes": {"x": {0: {"name": "batch", "min": 1, "max": 8}}},
}
CONV = {"entry": f"{MODULE}:ConvNet", "inputs": {"x": {"shape": [2, 3, 16, 16]}}}
MODELS = {"mlp": MLP, "conv": CONV}
TEST_SHAPES = {"mlp": [6, 64], "conv": [2, 3, 16, 16]}  # mlp: a batch other than the example's

# Lowest SNR (dB) accepted for the XNNPACK .pte, about 5 dB under what was measured, and the
# largest .pte size as a fraction of the fp32 XNNPACK .pte.
EXPECTED = {
    ("mlp", "pt2e_int8_static"): (32, 0.4),
    ("mlp", "pt2e_int8_dynamic"): (35, 0.4),
    ("mlp", "torchao_int8_dynact_int4w"): (15, 0.25),
    ("mlp", "torchao_int8_dynact_int8w"): (35, 0.4),
    ("mlp", "torchao_int8_weight_only"): (38, 0.45),
    ("conv", "pt2e_int8_static"): (35, 0.55),
    ("conv", "pt2e_int8_dynamic"): (45, 0.9),  # XNNPACK's dynamic quantization covers the linear only
    ("conv", "torchao_int8_dynact_int4w"): (25, 0.9),  # torchao quantizes nn.Linear only
    ("conv", "torchao_int8_dynact_int8w"): (45, 0.9),
    ("conv", "torchao_int8_weight_only"): (48, 0.95),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("qws")
    (ws / f"{MODULE}.py").write_text(MODELS_PY)
    sys.path.insert(0, str(ws))
    yield ws
    sys.path.remove(str(ws))
    sys.modules.pop(MODULE, None)


def step(ws: Path, module: str, config: dict, inputs: dict, output: str, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    request = {
        "module": module, "config": config, "label": "//:t", "inputs": inputs, "outputs": declared_outputs(module, output),
        "out_dir": str(out), "log": str(out / "log.txt"),
    }
    return run_step_request(request, ws)


def quantize(ws: Path, out: Path, config: dict) -> dict:
    return step(ws, "rules.steps.quantize", config, {"sources": {"sources": []}}, "program.pt2", out)


def lower(ws: Path, program: Path, backends: list[str], out: Path) -> dict:
    return step(ws, "rules.steps.partition", {"backends": backends}, {"program": {"path": str(program)}}, "program.pte", out)


def snr_db(ref: torch.Tensor, out: torch.Tensor) -> float:
    ref, out = ref.double(), out.double()
    return float(10 * torch.log10(ref.pow(2).mean() / (ref - out).pow(2).mean().clamp_min(1e-30)))


def eager_and_input(ws: Path, model: str, shape: list[int] | None = None):
    from rules.lib.modelio import load_model

    eager = load_model(ws, MODELS[model]["entry"], 0, None)
    x = torch.randn(*(shape or TEST_SHAPES[model]), generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        return eager(x), x


def run_pte(pte: Path, x: torch.Tensor) -> torch.Tensor:
    from executorch.runtime import Runtime

    return Runtime.get().load_program(str(pte)).load_method("forward").execute([x])[0]


@pytest.fixture(scope="module")
def built(workspace, tmp_path_factory):
    """(model, scheme) -> (result of the quantize step, path of program.pt2), built once."""
    root = tmp_path_factory.mktemp("qout")
    cache: dict = {}

    def get(model: str, scheme: str):
        if (model, scheme) not in cache:
            out = root / model / scheme
            if scheme == "fp32":
                result = step(workspace, "rules.steps.export", MODELS[model], {"sources": {"sources": []}}, "program.pt2", out)
            else:
                result = quantize(workspace, out, {"export": MODELS[model], "scheme": scheme})
            assert result["ok"], result
            cache[model, scheme] = result, out / "program.pt2"
        return cache[model, scheme]

    return get


@pytest.fixture(scope="module")
def fp32_pte_bytes(workspace, built, tmp_path_factory):
    """Size of the fp32 model's XNNPACK .pte, per model."""
    sizes: dict = {}

    def get(model: str) -> int:
        if model not in sizes:
            out = tmp_path_factory.mktemp(f"fp32_{model}")
            assert lower(workspace, built(model, "fp32")[1], ["xnnpack"], out)["ok"]
            sizes[model] = (out / "program.pte").stat().st_size
        return sizes[model]

    return get


@pytest.mark.parametrize("model,scheme", sorted(EXPECTED))
def test_scheme_lowers_to_xnnpack_and_keeps_accuracy(workspace, built, fp32_pte_bytes, tmp_path, model, scheme):
    result, program = built(model, scheme)
    metrics = result["metrics"]
    assert metrics["scheme"] == scheme
    assert metrics["quantized_layers"] >= 1
    assert metrics["weight_bytes"]["after"] < metrics["weight_bytes"]["before"]
    json.dumps(metrics)

    lowered = lower(workspace, program, ["xnnpack"], tmp_path / "x")
    assert lowered["ok"], lowered
    ref, x = eager_and_input(workspace, model)
    snr = snr_db(ref, run_pte(tmp_path / "x" / "program.pte", x))

    ratio = (tmp_path / "x" / "program.pte").stat().st_size / fp32_pte_bytes(model)

    min_snr, max_ratio = EXPECTED[model, scheme]
    assert snr >= min_snr, f"{model} {scheme}: SNR {snr:.1f} dB < {min_snr} dB"
    assert ratio <= max_ratio, f"{model} {scheme}: .pte is {ratio:.2f}x fp32"


def test_int8_weight_only_is_correct_without_a_partitioner(workspace, built, tmp_path):
    _, program = built("mlp", "torchao_int8_weight_only")
    assert lower(workspace, program, [], tmp_path)["ok"]
    ref, x = eager_and_input(workspace, "mlp")
    assert snr_db(ref, run_pte(tmp_path / "program.pte", x)) >= 38


@pytest.mark.parametrize("backends", [["xnnpack"], []])
def test_int4_weight_only_fails_loudly_at_lowering(workspace, built, tmp_path, backends):
    """Unwrapped int4 weight-only keeps torchao::dequantize_affine, which no ExecuTorch kernel
    implements: lowering fails instead of producing a program that computes garbage."""
    result, program = built("mlp", "torchao_int4_weight_only")
    assert result["metrics"]["quantized_layers"] == 2
    lowered = lower(workspace, program, backends, tmp_path)
    assert not lowered["ok"]
    assert "Missing out variants" in lowered["error"] and "dequantize_affine" in lowered["error"]


@pytest.mark.parametrize("weight", ["int8", "int4"])
def test_hazard_weight_only_subclass_program_is_garbage_on_xnnpack(workspace, tmp_path, weight):
    """Why the step unwraps torchao's tensor subclasses: a program exported with them still in
    place lowers to XNNPACK and runs without error, but its outputs are garbage."""
    from torchao.quantization import (
        Int8WeightOnlyConfig,
        IntxWeightOnlyConfig,
        quantize_,
    )
    from torchao.quantization.granularity import PerGroup

    from rules.lib.modelio import load_model

    config = (
        Int8WeightOnlyConfig(set_inductor_config=False) if weight == "int8"
        else IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32))
    )
    model = load_model(workspace, MLP["entry"], 0, None)
    quantize_(model, config)
    ep = torch.export.export(model, (torch.randn(4, 64),))
    torch.export.save(ep, str(tmp_path / "subclass.pt2"))
    lowered = lower(workspace, tmp_path / "subclass.pt2", ["xnnpack"], tmp_path / "x")
    assert lowered["ok"], lowered

    ref, x = eager_and_input(workspace, "mlp", [4, 64])  # exported with a static batch of 4
    assert snr_db(ref, run_pte(tmp_path / "x" / "program.pte", x)) < -20


def test_programs_load_in_a_fresh_worker_process(built):
    """quantized_decomposed:: and torchao:: ops are registered by importing torchao, which the
    worker's preload (executorch.exir) does; a process with torch alone cannot load them."""
    paths = [str(built(m, s)[1]) for m, s in sorted(EXPECTED)]
    paths.append(str(built("mlp", "torchao_int4_weight_only")[1]))
    code = (
        "import sys, torch, executorch.exir\n"
        "for p in sys.argv[1:]:\n"
        "    torch.export.load(p)\n"
        "print('loaded', len(sys.argv) - 1)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"loaded {len(paths)}" in proc.stdout


def test_pt2e_output_is_byte_identical_across_runs(workspace, tmp_path):
    config = {"export": MLP, "scheme": "pt2e_int8_static", "calibration": {"samples": 2}}
    assert quantize(workspace, tmp_path / "a", config)["ok"]
    assert quantize(workspace, tmp_path / "b", config)["ok"]
    assert (tmp_path / "a" / "program.pt2").read_bytes() == (tmp_path / "b" / "program.pt2").read_bytes()


def test_calibration_from_npz(workspace, tmp_path):
    rng = np.random.default_rng(0)
    # batch is dynamic (1..8): samples may use any batch size in range, here 3
    np.savez(workspace / "cal.npz", x=rng.standard_normal((5, 3, 64)).astype(np.float32))
    config = {"export": MLP, "scheme": "pt2e_int8_static", "calibration": {"file": "cal.npz"}}
    result = quantize(workspace, tmp_path / "q", config)
    assert result["ok"], result
    assert result["metrics"]["calibration_samples"] == 5

    assert lower(workspace, tmp_path / "q" / "program.pt2", ["xnnpack"], tmp_path / "x")["ok"]
    ref, x = eager_and_input(workspace, "mlp")
    assert snr_db(ref, run_pte(tmp_path / "x" / "program.pte", x)) >= 30


def test_calibration_from_safetensors(workspace, tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.randn(3, 4, 64), "unused": torch.zeros(1)}, str(workspace / "cal.safetensors"))
    config = {"export": MLP, "scheme": "pt2e_int8_static", "calibration": {"file": "cal.safetensors"}}
    result = quantize(workspace, tmp_path, config)
    assert result["ok"], result
    assert result["metrics"]["calibration_samples"] == 3


@pytest.mark.parametrize(
    "name,arrays,expected",
    [
        ("missing.npz", {"y": np.zeros((2, 4, 64), np.float32)}, "has no array for input(s) x; it has: y"),
        ("trailing.npz", {"x": np.zeros((2, 4, 32), np.float32)}, "array 'x' has shape [2, 4, 32], but input 'x' needs [N, 1..8, 64]"),
        ("nosamples.npz", {"x": np.zeros((4, 64), np.float32)}, "array 'x' has shape [4, 64]"),
        ("toobig.npz", {"x": np.zeros((2, 9, 64), np.float32)}, "needs [N, 1..8, 64]"),
        ("ints.npz", {"x": np.zeros((2, 4, 64), np.int32)}, "array 'x' is torch.int32, but input 'x' is float32"),
        ("corrupt.npz", None, "calibration file corrupt.npz could not be read"),
        ("absent.npz", "absent", "calibration file 'absent.npz' not found in the workspace"),
    ],
)
def test_calibration_file_errors_are_clear(workspace, tmp_path, name, arrays, expected):
    if arrays is None:
        (workspace / name).write_bytes(b"not a zip file")
    elif isinstance(arrays, dict):
        np.savez(workspace / name, **arrays)
    config = {"export": MLP, "scheme": "pt2e_int8_static", "calibration": {"file": name}}
    result = quantize(workspace, tmp_path, config)
    assert not result["ok"]
    assert result["show_log"] is False  # a StepError: one message, no traceback
    assert expected in result["error"]


def test_group_size_skips_layers_that_do_not_divide(workspace, tmp_path):
    ragged = {"entry": f"{MODULE}:Ragged", "inputs": {"x": {"shape": [2, 48]}}}
    result = quantize(workspace, tmp_path / "r", {"export": ragged, "scheme": "torchao_int8_dynact_int4w"})
    assert result["ok"], result
    metrics = result["metrics"]
    assert metrics["skipped_layers"] == ["fc1"]
    assert metrics["quantized_layers"] == 1
    # fc1 (48x64) holds 3/4 of the weight bytes: the build warns, naming it and why
    cov = metrics["coverage"]
    assert (cov["weight_bytes"], cov["quantized_weight_bytes"]) == ((48 * 64 + 64 * 16) * 4, 64 * 16 * 4)
    assert "warnings" not in metrics, "warnings travel beside the metrics, not in them"
    [warning] = result["warnings"]
    assert warning == (
        "torchao_int8_dynact_int4w quantized 1 of 2 weight-bearing layers (25% of their weight bytes); left in float: "
        "1 Linear layer (fc1; 75% of the weight bytes): skipped for group_size 32: their input features are not "
        "a multiple of 32."
    )

    narrow = {"entry": f"{MODULE}:Narrow", "inputs": {"x": {"shape": [2, 48]}}}
    result = quantize(workspace, tmp_path / "n", {"export": narrow, "scheme": "torchao_int4_weight_only"})
    assert not result["ok"]
    assert "quantized nothing" in result["error"]
    assert "skipped for group_size 32: their input features are not a multiple of 32: fc" in result["error"]


@pytest.mark.parametrize("scheme,reason", [
    ("pt2e_int8_dynamic", "XNNPACKQuantizer's dynamic config did not annotate them"),
    ("torchao_int8_dynact_int8w", "torchao_int8_dynact_int8w quantizes linear layers (and transformers' Conv1D) only"),
])
def test_convs_left_in_float_are_named_in_a_warning(built, scheme, reason):
    """ConvNet's weight bytes are mostly in its convs, which these schemes leave in float."""
    result = built("conv", scheme)[0]
    cov = result["metrics"]["coverage"]
    assert cov["by_kind"] == {"Conv2d": {"layers": 2, "quantized": 0}, "Linear": {"layers": 1, "quantized": 1}}
    assert cov["left_float"] == {reason: "conv1, conv2"}
    [warning] = result["warnings"]
    assert f"2 Conv2d layers (conv1, conv2; 71% of the weight bytes): {reason}" in warning


def test_static_int8_quantizes_every_conv_and_linear(built):
    cov = built("conv", "pt2e_int8_static")[0]["metrics"]["coverage"]
    assert (cov["layers"], cov["quantized_layers"], cov["quantized_share"]) == (3, 3, 1.0)
    assert built("conv", "pt2e_int8_static")[0]["warnings"] == []


@pytest.mark.parametrize(
    "extra,expected",
    [
        ({"scheme": "pt2e_int8_dynamic", "calibration": {"samples": 4}}, "calibration applies only to scheme 'pt2e_int8_static'"),
        ({"scheme": "pt2e_int8_static", "calibration": {"file": "c.npz", "samples": 4}}, "samples and seed apply only to random samples"),
        ({"scheme": "pt2e_int8_static", "calibration": {"file": "c.csv"}}, "must be a .npz or .safetensors file"),
        ({"scheme": "pt2e_int8_static", "group_size": 64}, "group_size applies only to schemes"),
        ({"scheme": "torchao_int8_weight_only", "per_channel": False}, "per_channel applies only to the pt2e schemes"),
        ({"scheme": "int8"}, "scheme"),
    ],
)
def test_config_validation(extra, expected):
    with pytest.raises(ValidationError, match=re.escape(expected)):
        QuantizeConfig.model_validate({"export": MLP, **extra})


@pytest.mark.parametrize("scheme", QuantizeConfig.model_fields["scheme"].annotation.__args__)
def test_config_survives_the_engine_round_trip(scheme):
    """The engine sends model_dump(mode="json"), every field set; the worker validates it again."""
    config = QuantizeConfig.model_validate({"export": MLP, "scheme": scheme})
    assert QuantizeConfig.model_validate(json.loads(json.dumps(config.model_dump(mode="json")))) == config

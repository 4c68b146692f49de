"""Step `coreml_compress` (int8 linear, k-means palettization) and its numeric check on Linux.

Small models are converted in-process to .mlpackage (float32 and float16), compressed through
the step's run() with a real StepContext, reloaded with skip_model_load=True, and checked by
loading the decompressed weights back into the torch model (Core ML cannot predict on Linux).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
ct = pytest.importorskip("coremltools")

from helpers import step_request  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from rules.coreml.mil import load_mil  # noqa: E402
from rules.coreml.weights_check import compare_compressed_weights  # noqa: E402
from rules.errors import StepError  # noqa: E402
from rules.steps import coreml_compress  # noqa: E402
from rules.steps.coreml_compress import CoremlCompressConfig  # noqa: E402
from rules.worker import StepContext  # noqa: E402

os.environ.setdefault("TQDM_DISABLE", "1")

SCHEMES = {
    "int8": {"scheme": "linear"},
    "pal2": {"scheme": "palettize", "nbits": 2},
    "pal4": {"scheme": "palettize", "nbits": 4},
    "pal6": {"scheme": "palettize", "nbits": 6},
    "pal8": {"scheme": "palettize", "nbits": 8},
}
# Lowest output SNR (dB) each scheme must reach on these models. Measured: 2 bits 9.0-13.5,
# 4 bits 20-24, 6 bits 33-38, 8 bits 46-58, int8 45-49; weights of another model give < 10.
MIN_OUTPUT_SNR = {"pal2": 7.0, "pal4": 17.0, "pal6": 29.0, "pal8": 42.0, "int8": 40.0}


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(32, 64)   # 2048 elements: coremltools' default threshold skips it
        self.fc2 = torch.nn.Linear(64, 64)
        self.out = torch.nn.Linear(64, 10)   # 640 elements

    def forward(self, x):
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class ConvNet(torch.nn.Module):
    """The batch norm is folded into c1 by the converter: c1's weight comes out as `const_N`."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 16, 3, padding=1)    # 432 elements
        self.bn = torch.nn.BatchNorm2d(16)
        self.c2 = torch.nn.Conv2d(16, 32, 3, padding=1)   # 4608 elements
        self.head = torch.nn.Linear(32, 10)               # 320 elements

    def forward(self, x):
        x = torch.relu(self.bn(self.c1(x)))
        x = torch.relu(self.c2(x))
        return self.head(x.mean(dim=(2, 3)))


def make_model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    if name == "mlp":
        return MLP().eval(), (torch.randn(4, 32),)
    model = ConvNet()
    with torch.no_grad():  # trained-looking statistics, so the folded weight is not the conv's own
        model.bn.weight.uniform_(0.5, 2.0)
        model.bn.bias.normal_(0.0, 0.3)
        model.bn.running_mean.normal_(0.0, 0.3)
        model.bn.running_var.uniform_(0.5, 2.0)
    return model.eval(), (torch.randn(2, 3, 16, 16),)


def convert(model, args, path: Path, precision: str, target=None) -> Path:
    ep = torch.export.export(model, args).run_decompositions({})
    mlmodel = ct.convert(
        ep,
        minimum_deployment_target=target or ct.target.iOS17,
        compute_precision=getattr(ct.precision, precision),
    )
    mlmodel.save(str(path))
    return path


def run_step(package: Path, out: Path, config: dict) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    request = {
        "module": "rules.steps.coreml_compress", "config": config, "label": "//:t", "inputs": {"package": {"path": str(package)}},
        "outputs": ["model.mlpackage"], "out_dir": str(out), "log": str(out / "log.txt"),
    }
    return coreml_compress.run(StepContext(step_request(request), out))


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    root = tmp_path_factory.mktemp("packages")
    made = {}
    for name in ("mlp", "conv"):
        model, args = make_model(name)
        for precision in ("FLOAT32", "FLOAT16"):
            made[name, precision] = (model, args, convert(model, args, root / f"{name}_{precision}.mlpackage", precision))
    return made


@pytest.fixture(scope="module")
def results(packages, tmp_path_factory):
    """Every (model, precision, scheme): the step's metrics and the numeric check."""
    root = tmp_path_factory.mktemp("compressed")
    out = {}
    for (name, precision), (model, args, package) in packages.items():
        for scheme, compression in SCHEMES.items():
            dst = root / f"{name}_{precision}_{scheme}"
            metrics = run_step(package, dst, {"compression": compression})
            check = compare_compressed_weights(dst / "model.mlpackage", model, args, reference_package=package)
            out[name, precision, scheme] = (metrics, check, dst / "model.mlpackage")
    return out


KEYS = [(n, p, s) for n in ("mlp", "conv") for p in ("FLOAT32", "FLOAT16") for s in SCHEMES]


@pytest.mark.parametrize("key", KEYS, ids=["-".join(k) for k in KEYS])
def test_compressed_package_is_smaller_loads_and_matches(results, key):
    metrics, check, package = results[key]
    _, precision, scheme = key

    # Every weight above the threshold (256 elements) is compressed: 3 in each model.
    assert metrics["compressed_consts"] == 3, metrics
    assert metrics["uncompressed_weight_consts"] == 0, metrics
    assert metrics["weight_bin_bytes_after"] < metrics["weight_bin_bytes_before"], metrics
    assert metrics["package_bytes_after"] < metrics["package_bytes_before"], metrics
    if scheme in ("pal2", "pal4") or precision == "FLOAT32":
        assert metrics["weight_bin_ratio"] < 0.6, metrics

    # It loads on Linux without Core ML, with the same interface, and holds constexpr ops.
    loaded = ct.models.MLModel(str(package), skip_model_load=True)
    spec = loaded.get_spec()
    assert spec.WhichOneof("Type") == "mlProgram"
    assert spec.specificationVersion == 8  # iOS17, as converted: not raised by compression
    ops = {op.op_type for f in load_mil(package)[1].functions.values() for op in f.operations}
    assert ("constexpr_affine_dequantize" if scheme == "int8" else "constexpr_lut_to_dense") in ops

    # Numerically: every compressed weight mapped back, outputs close to the float model's.
    assert check["complete"] and check["compressed_mapped"] == 3, check
    assert check["snr_db"] >= MIN_OUTPUT_SNR[scheme], check
    assert check["max_abs_error"] > 0.0
    assert metrics["weight_snr_db_min"] == pytest.approx(
        min(w["compression_snr_db"] for w in check["weights"] if w["compressed"]), abs=0.01
    )


@pytest.mark.parametrize("name", ["mlp", "conv"])
@pytest.mark.parametrize("precision", ["FLOAT32", "FLOAT16"])
def test_more_bits_give_higher_snr_and_bigger_files(results, name, precision):
    snr = {s: results[name, precision, s][1]["snr_db"] for s in SCHEMES}
    size = {s: results[name, precision, s][0]["weight_bin_bytes_after"] for s in SCHEMES}
    assert snr["pal2"] < snr["pal4"] < snr["pal6"] < snr["pal8"], snr
    assert snr["pal8"] - snr["pal2"] > 30, snr
    assert size["pal2"] < size["pal4"] < size["pal6"] < size["pal8"], size


def test_names_map_directly_and_the_folded_conv_weight_by_shape_with_its_bn_scale(results):
    _, check, _ = results["mlp", "FLOAT16", "pal4"]
    compressed = {w["param"]: w for w in check["weights"] if w["compressed"]}
    assert set(compressed) == {"fc1.weight", "fc2.weight", "out.weight"}
    assert {w["mapped_by"] for w in compressed.values()} == {"name"}
    assert {w["scaling"] for w in compressed.values()} == {"direct"}
    assert compressed["fc1.weight"]["const"] == "p_fc1_weight_to_fp16_palettized"

    for scheme in SCHEMES:
        _, check, _ = results["conv", "FLOAT32", scheme]
        by_param = {w["param"]: w for w in check["weights"] if w["compressed"]}
        assert set(by_param) == {"c1.weight", "c2.weight", "head.weight"}
        c1 = by_param["c1.weight"]
        assert c1["const"].startswith("const_"), c1
        assert (c1["mapped_by"], c1["scaling"]) == ("shape", "channel_scale"), (scheme, c1)
        assert by_param["c2.weight"]["mapped_by"] == by_param["head.weight"]["mapped_by"] == "name"
        assert by_param["c2.weight"]["scaling"] == "direct", (scheme, by_param["c2.weight"])


def test_check_without_reference_or_inputs_still_maps_and_agrees(results, packages):
    model, args, _ = packages["conv", "FLOAT32"]
    metrics, with_ref, package = results["conv", "FLOAT32", "pal4"]
    alone = compare_compressed_weights(package, model, args)
    assert alone["complete"] and alone["mapped"] == with_ref["mapped"]
    assert abs(alone["snr_db"] - with_ref["snr_db"]) < 1.5  # scales fitted to compressed values
    # Inputs derived from the package's own input descriptions (by name, seeded).
    derived = compare_compressed_weights(package, model)
    assert derived["complete"] and derived["snr_db"] >= MIN_OUTPUT_SNR["pal4"]


def test_check_catches_weights_of_another_model(results):
    other, args = make_model("mlp", seed=1)
    _, _, package = results["mlp", "FLOAT32", "int8"]
    check = compare_compressed_weights(package, other, args)
    assert check["complete"]  # names still map...
    assert check["weight_snr_db_min"] < 3 and check["snr_db"] < 10, check  # ...but the values do not


def test_weight_threshold_is_configurable(packages, tmp_path):
    _, _, package = packages["mlp", "FLOAT32"]
    assert CoremlCompressConfig.model_validate({"compression": {"scheme": "linear"}}).weight_threshold == 256
    # coremltools' own default (2048) compresses only tensors of more than 2048 elements.
    metrics = run_step(package, tmp_path / "a", {"compression": {"scheme": "linear"}, "weight_threshold": 2048})
    assert metrics["compressed_consts"] == 1 and metrics["uncompressed_weight_consts"] == 2, metrics
    # A threshold above every weight compresses nothing: an error that names the largest weight.
    with pytest.raises(StepError, match="compression changed nothing.*largest has 4096 elements"):
        run_step(package, tmp_path / "b", {"compression": {"scheme": "linear"}, "weight_threshold": 10_000})


def test_same_input_gives_identical_weights_and_no_temp_packages_are_left(packages, tmp_path, monkeypatch):
    _, _, package = packages["conv", "FLOAT16"]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    config = {"compression": {"scheme": "palettize", "nbits": 4}}
    run_step(package, tmp_path / "a", config)
    run_step(package, tmp_path / "b", config)
    weights = "model.mlpackage/" + coreml_compress.WEIGHTS
    assert (tmp_path / "a" / weights).read_bytes() == (tmp_path / "b" / weights).read_bytes()
    assert not list(scratch.iterdir())


@pytest.mark.parametrize("config", [
    {"compression": {"scheme": "palettize", "nbits": 3}},
    {"compression": {"scheme": "palettize"}},
    {"compression": {"scheme": "linear", "dtype": "int4"}},
    {"compression": {"scheme": "kmeans", "nbits": 4}},
    {"compression": {"scheme": "linear"}, "weight_threshold": -1},
    {"compression": {"scheme": "linear"}, "quantise": True},
])
def test_bad_configs_are_rejected(config):
    with pytest.raises(ValidationError):
        CoremlCompressConfig.model_validate(config)


def test_ios15_package_is_rejected_rather_than_silently_retargeted(tmp_path):
    model, args = make_model("mlp")
    package = convert(model, args, tmp_path / "ios15.mlpackage", "FLOAT32", target=ct.target.iOS15)
    with pytest.raises(StepError, match="iOS16"):
        run_step(package, tmp_path / "out", {"compression": {"scheme": "linear"}})


def test_input_that_is_not_a_package_is_a_step_error(tmp_path):
    (tmp_path / "x.mlpackage").mkdir()
    with pytest.raises(StepError, match="not an .mlpackage"):
        run_step(tmp_path / "x.mlpackage", tmp_path / "out", {"compression": {"scheme": "linear"}})

"""What quantization covers: a tiny GPT-2 (transformers' Conv1D, an lm_head tied to the token
embedding) built through the CLI with torchao and pt2e schemes to XNNPACK, the coverage report
and its warnings in the action cache; and the faster HistogramObserver, checked bit for bit
against torchao's."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from helpers import build

from buildsys.cache.action_cache import ActionCache

WORKSPACE = Path(__file__).parents[1] / "workspaces" / "quantize_coverage"
# tiny GPT-2: 2 blocks of 4 Conv1D (32x96, 32x32, 32x128, 128x32), wte 128x32 (tied to lm_head), wpe 32x32
CONV1D_BYTES = 2 * (32 * 96 + 32 * 32 + 32 * 128 + 128 * 32) * 4
WTE_BYTES, WPE_BYTES = 128 * 32 * 4, 32 * 32 * 4


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    ws = tmp_path_factory.mktemp("coverage")
    shutil.copytree(WORKSPACE, ws, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    proc, events = build(ws, extra=("-j", "2"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cache = ActionCache(ws / "cache" / "ac")
    results = {(e["step"], label): cache.get(e["action_key"]) for e in events
               if e["status"] in ("ran", "cached") for label in e["labels"]}
    cache.close()
    return ws, proc, results


def quantize_metrics(results, label: str) -> dict:
    """The quantize step's metrics, and its warnings (a field of the record) under "warnings"."""
    return results[("quantize", label)].reported()


@pytest.mark.parametrize("label,scheme", [("//:gpt2_8da4w", "torchao_int8_dynact_int4w"),
                                          ("//:gpt2_int8_dynamic", "pt2e_int8_dynamic"),
                                          ("//:gpt2_int4_dynamic", "pt2e_int8_dynamic_int4w")])
def test_gpt2_conv1d_layers_are_quantized(built, label, scheme):
    _, _, results = built
    metrics = quantize_metrics(results, label)
    assert metrics["scheme"] == scheme
    assert metrics["conv1d_as_linear"] == 8
    cov = metrics["coverage"]
    assert cov["by_kind"] == {
        "Conv1D (transformers)": {"layers": 8, "quantized": 8},
        "Embedding": {"layers": 2, "quantized": 0},
        "Linear": {"layers": 1, "quantized": 1},  # lm_head
    }
    assert (cov["layers"], cov["quantized_layers"], metrics["quantized_layers"]) == (11, 9, 9)
    # lm_head's weight is wte's: counted once, and not as quantized (the float table stays for wte)
    assert cov["weight_bytes"] == CONV1D_BYTES + WTE_BYTES + WPE_BYTES
    assert cov["quantized_weight_bytes"] == CONV1D_BYTES
    assert cov["quantized_share"] == round(CONV1D_BYTES / cov["weight_bytes"], 3)
    assert list(cov["left_float"].values()) == ["net.transformer.wte, net.transformer.wpe"]
    assert cov["shared_weights"] == [
        "net.lm_head is quantized but shares its weight with net.transformer.wte, which is not: "
        "the program keeps the float weight beside its quantized copy"
    ]
    assert metrics["weight_bytes"]["after"] < 0.6 * metrics["weight_bytes"]["before"]
    assert "warnings" not in metrics


@pytest.mark.parametrize("name,min_snr", [("gpt2_8da4w", 15), ("gpt2_int8_dynamic", 30), ("gpt2_int4_dynamic", 15)])
def test_gpt2_quantized_pte_verifies_and_shrinks(built, name, min_snr):
    ws, _, results = built
    report = results[("verify", f"//:{name}")].metrics["verification"]
    assert report["numeric"] and all(c["snr_db"] >= min_snr for c in report["cases"]), report["cases"]
    fp32 = (ws / "out" / "gpt2_fp32.pte").stat().st_size
    assert (ws / "out" / f"{name}.pte").stat().st_size < 0.75 * fp32


def test_little_quantized_and_no_smaller_warns(built):
    """TiedLM's only weight is the table its Embedding and its head share: the head is quantized,
    the table stays float for the embedding, and the quantized copy makes the program bigger."""
    _, proc, results = built
    metrics = quantize_metrics(results, "//:tied_8da8w")
    cov = metrics["coverage"]
    assert (cov["layers"], cov["quantized_layers"], cov["quantized_weight_bytes"]) == (2, 1, 0)
    assert cov["weight_bytes"] == 128 * 64 * 4
    assert metrics["weight_bytes"]["after"] > metrics["weight_bytes"]["before"]
    little, bigger = metrics["warnings"]
    assert little.startswith("torchao_int8_dynact_int8w quantized 1 of 2 weight-bearing layers (0% of their weight bytes)")
    assert "1 Embedding layer (embed; 100% of the weight bytes): Embedding layers are not quantized by torchao_int8_dynact_int8w" in little
    assert "head is quantized but shares its weight with embed" in little
    assert bigger == ("the torchao_int8_dynact_int8w program's weights take 41,600 bytes, no fewer than the float "
                      "model's 32,768: quantizing did not make it smaller.")
    console = " ".join(proc.stdout.split())  # the build summary shows them
    assert " ".join(little.split()) in console and bigger in console


# ---- the faster HistogramObserver: the same ranges as torchao's ----


def _observations():
    g = torch.Generator().manual_seed(0)
    return {
        "normal": [torch.randn(1000, generator=g)],
        "relu": [torch.relu(torch.randn(5000, generator=g))],
        "heavy tails": [torch.empty(4000).cauchy_(generator=g)],
        "growing range": [torch.randn(500, generator=g) * s for s in (0.1, 1.0, 10.0)],
        "vanishing (1e-17)": [torch.randn(3000, generator=g) * 1e-17, torch.randn(3000, generator=g) * 2e-17],
        "constant": [torch.full((10,), 3.0)],
        "zeros": [torch.zeros(10)],
        "two values": [torch.tensor([0.0, 1.0])],
        "lognormal": [torch.randn(2000, generator=g).exp()],
    }


@pytest.mark.parametrize("case", list(_observations()))
def test_fast_histogram_observer_finds_the_same_range(case):
    from torchao.quantization.pt2e.observer import HistogramObserver

    from rules.lib.histogram_observer import FastHistogramObserver

    qparams = []
    for cls in (HistogramObserver, FastHistogramObserver):
        observer = cls(dtype=torch.int8, quant_min=-128, quant_max=127, qscheme=torch.per_tensor_affine, eps=2**-12)
        for x in _observations()[case]:
            observer(x)
        qparams.append(tuple(t.item() for t in observer.calculate_qparams()))
    assert qparams[0] == qparams[1]


def test_fast_histogram_observer_searches_once_per_state():
    from rules.lib.histogram_observer import FastHistogramObserver

    observer = FastHistogramObserver(dtype=torch.int8, quant_min=-128, quant_max=127, eps=2**-12)
    observer(torch.randn(100))
    calls = []
    search = observer._non_linear_param_search
    observer._non_linear_param_search = lambda: calls.append(1) or search()
    first, again = observer.calculate_qparams(), observer.calculate_qparams()
    assert len(calls) == 1 and all(torch.equal(a, b) for a, b in zip(first, again))
    observer(torch.randn(100) * 3)  # new observations: a new search
    observer.calculate_qparams()
    assert len(calls) == 2


def test_static_config_observes_with_the_fast_histograms():
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        get_symmetric_quantization_config,
    )

    from rules.lib.histogram_observer import FastHistogramObserver, with_fast_histograms

    config = with_fast_histograms(get_symmetric_quantization_config(is_per_channel=True))
    observer = config.input_activation.observer_or_fake_quant_ctr()
    assert type(observer) is FastHistogramObserver and observer.eps == 2**-12
    dynamic = get_symmetric_quantization_config(is_dynamic=True)
    assert with_fast_histograms(dynamic) == dynamic  # no histograms to replace


def test_conv1d_becomes_an_equivalent_linear():
    from transformers import GPT2Config, GPT2LMHeadModel

    from rules.lib.quantize_layers import (
        CONV1D,
        conv1d_to_linear,
        weight_bearing_layers,
    )

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=128, n_positions=32)).eval()
    ids = torch.randint(0, 128, (2, 8))
    with torch.no_grad():
        before = model(ids, use_cache=False).logits
        assert [l.kind for l in weight_bearing_layers(model).values()].count(CONV1D) == 4
        assert conv1d_to_linear(model) == 4
        after = model(ids, use_cache=False).logits
    assert isinstance(model.transformer.h[0].attn.c_attn, torch.nn.Linear)
    assert torch.allclose(before, after, atol=1e-6, rtol=0)

"""seq2seq_program: a tiny T5 (tests/workspaces/llm/t5) built through the CLI to one .pte with
`encoder` and `text_decoder` methods, fp32 and 8da4w with its weights in a .ptd, each with its
tokenizer beside it. The fp32 program emits the eager model's tokens; a second build runs nothing."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import action_results, build, by_status

WORKSPACE = Path(__file__).parents[1] / "workspaces" / "llm"
TARGETS = {"t5_fp32": False, "t5_8da4w": True}  # name -> weights in a .ptd


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    ws = tmp_path_factory.mktemp("seq2seq")
    shutil.copytree(WORKSPACE, ws, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "out", "cache"))
    proc, events = build(ws, "//t5:all", extra=("-j", "2"))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return ws, events


def generation(ws: Path, events: list[dict], name: str) -> dict:
    return action_results(ws, events)[("llm_seq2seq_verify", f"//t5:{name}")].metrics["generation"]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_one_pte_holds_both_methods_beside_its_companions(t5, name):
    import executorch.kernels.quantized  # noqa: F401  the 8da4w program's quantized ops
    from executorch.extension.pybindings.portable_lib import _load_for_executorch

    ws, _ = t5
    out = ws / "out" / "t5"
    assert (out / f"{name}.tokenizer.json").read_bytes() == (WORKSPACE / "t5" / "tokenizer.json").read_bytes()
    assert (out / f"{name}.ptd").exists() == TARGETS[name]
    ptd = str(out / f"{name}.ptd") if TARGETS[name] else None
    module = _load_for_executorch(str(out / f"{name}.pte"), ptd) if ptd else _load_for_executorch(str(out / f"{name}.pte"))
    assert {"encoder", "text_decoder", "decoder_start_token_id", "max_hidden_seq_length"} <= set(module.method_names())


def test_the_fp32_program_emits_the_eager_tokens(t5):
    ws, events = t5
    fp32 = generation(ws, events, "t5_fp32")
    assert fp32["program_tokens"] == fp32["eager_tokens"] and fp32["token_agreement"] == 1.0, fp32
    assert fp32["min_logits_snr_db"] >= 40, fp32
    quantized = generation(ws, events, "t5_8da4w")  # passed its own (looser) tolerance; weights in the .ptd
    assert quantized["size"]["ptd_bytes"] > quantized["size"]["pte_bytes"], quantized["size"]


def test_a_second_build_runs_nothing(t5):
    ws, _ = t5
    proc, events = build(ws, "//t5:all", events="again.jsonl", extra=("-j", "2"))
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert not by_status(events, "ran") and len(by_status(events, "cached")) == 8, events

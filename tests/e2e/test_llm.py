"""The LLM zoo: tiny Llama, Qwen3, Phi-3 and Gemma decoders from transformers configs, each
built to ExecuTorch's LLM-runner format as fp32 and as 8da4w with int8 embeddings and its weights
in a .ptd (Llama also as plain 8da4w, on portable kernels, and with two pt2e quantizations of its float export), through the CLI; and a T5 (tests/e2e/test_seq2seq.py). Every program is checked by greedy generation against the
eager model and once in ExecuTorch's TextLLMRunner; the tests read what the checks reported,
then run the shipped files in TextLLMRunner themselves.

The workspace is tests/workspaces/llm; bench/llm_table.py prints its table."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import action_results, build, by_status

WORKSPACE = Path(__file__).parents[1] / "workspaces" / "llm"
DECODERS = ("llama", "qwen3", "phi3", "gemma")
VARIANTS = ("fp32", "8da4w_ptd")  # the last: 8da4w, int8 embeddings, weights in a .ptd
PT2E = ["//:llama_dq8", "//:llama_dq4"]  # pt2e_int8_dynamic and pt2e_int8_dynamic_int4w, of the float export
PROGRAMS = [f"//:{d}_{v}" for d in DECODERS for v in VARIANTS] + ["//:llama_8da4w", "//:llama_portable", *PT2E]
FLOAT = [label for label in PROGRAMS if label.endswith(("_fp32", "_portable"))]


@pytest.fixture(scope="module")
def llm_zoo(tmp_path_factory):
    ws = tmp_path_factory.mktemp("llm")
    shutil.copytree(WORKSPACE, ws, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "out", "cache"))
    proc, events = build(ws, "//:all", extra=("--keep-going", "-j", "2"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ws, events, action_results(ws, events)


def generation(results, label: str) -> dict:
    return results[("llm_verify", label)].metrics["generation"]


def test_every_program_is_built_with_its_files_beside_it(llm_zoo):
    ws, _, _ = llm_zoo
    for label in PROGRAMS:
        name = label.removeprefix("//:")
        assert (ws / "out" / f"{name}.pte").is_file(), name
        assert (ws / "out" / f"{name}.tokenizer.json").read_bytes() == (WORKSPACE / "tokenizer.json").read_bytes()
        assert (ws / "out" / f"{name}.ptd").is_file() == name.endswith("_ptd"), name


def test_float_programs_generate_the_eager_tokens_and_quantized_ones_stay_close(llm_zoo):
    _, _, results = llm_zoo
    for label in PROGRAMS:
        report = generation(results, label)
        assert len(report["eager_tokens"]) == 16, label
        if label in FLOAT:  # fp32, on XNNPACK or portable kernels
            assert report["program_tokens"] == report["eager_tokens"], label
            assert report["token_agreement"] == 1.0 and report["min_logits_snr_db"] > 40, (label, report)
        elif label == "//:llama_dq8":  # int8 weights: close to float
            assert report["token_agreement"] >= 0.75 and report["min_logits_snr_db"] >= 25, (label, report)
        else:  # int4 weights, held to the scheme's default tolerance (rules/targets/llm.py)
            assert report["token_agreement"] >= 0.5 and report["min_logits_snr_db"] >= 5, (label, report)
        assert report["decode_tokens_per_s"] > 0 and report["prefill_tokens_per_s"] > 0


def test_the_runner_metadata_is_in_every_program(llm_zoo):
    _, _, results = llm_zoo
    for label in PROGRAMS:
        metadata = generation(results, label)["metadata"]
        assert metadata == {"get_max_seq_len": 64, "get_max_context_len": 64, "get_vocab_size": 320, "get_bos_id": 1,
                            "use_kv_cache": True, "use_sdpa_with_kv_cache": True, "enable_dynamic_shape": True}, label
        assert results[("llm_lower", label)].metrics["metadata"]["get_eos_ids"] == [2]  # "</s>" in tokenizer.json


def forward_operators(pte: Path) -> set[str]:
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(pte.read_bytes())
    plan = next(p for p in getattr(program, "program", program).execution_plan if p.name == "forward")
    return {op.name for op in plan.operators}


def test_programs_use_executorchs_cache_update_and_sdpa(llm_zoo):
    """The KV cache is written in place by llama::update_cache and read by llama::custom_sdpa, on
    XNNPACK and portable kernels alike: no index_put and no copy of the cache per token."""
    ws, _, _ = llm_zoo
    for label in PROGRAMS:
        ops = forward_operators(ws / "out" / f"{label.removeprefix('//:')}.pte")
        assert {"llama::update_cache", "llama::custom_sdpa"} <= ops, (label, ops)
        assert not {"aten::index_put", "aten::index_put_", "aten::copy_", "aten::index_copy"} & ops, (label, ops)


def test_weights_move_to_the_ptd_and_quantization_shrinks_them(llm_zoo):
    ws, _, results = llm_zoo
    for decoder in DECODERS:
        size = {v: generation(results, f"//:{decoder}_{v}")["size"] for v in VARIANTS}
        assert size["8da4w_ptd"]["pte_bytes"] < size["fp32"]["pte_bytes"] / 4, (decoder, size)  # the weights left
        assert 0 < size["8da4w_ptd"]["ptd_bytes"] < size["fp32"]["pte_bytes"] / 3, (decoder, size)  # and shrank
        assert size["8da4w_ptd"]["ptd_bytes"] == (ws / "out" / f"{decoder}_8da4w_ptd.ptd").stat().st_size
        assert size["fp32"]["delegates"].keys() == {"XnnpackBackend"}, decoder
    plain, fp32 = (generation(results, f"//:llama_{v}")["size"] for v in ("8da4w", "fp32"))
    assert plain["ptd_bytes"] == 0 and plain["pte_bytes"] < fp32["pte_bytes"] / 2


def test_the_checks_ran_each_program_in_text_llm_runner(llm_zoo):
    _, _, results = llm_zoo
    for label in PROGRAMS:
        runner = generation(results, label)["runner"]
        assert runner["generated_tokens"] >= 1 and runner["prompt_tokens"] >= 1, (label, runner)


def test_shipped_files_generate_text_in_text_llm_runner(llm_zoo):
    """What an app does: the .pte, its .ptd and the tokenizer, in ExecuTorch's own runner, with
    ExecuTorch's LLM custom ops and quantized kernels linked (here: loaded into the process)."""
    import executorch.kernels.quantized  # noqa: F401  the int8 embedding's kernel
    from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401  custom sdpa
    from executorch.extension.llm.runner import GenerationConfig, TextLLMRunner

    ws, _, _ = llm_zoo
    out = ws / "out"
    runner = TextLLMRunner(str(out / "llama_8da4w_ptd.pte"), str(out / "llama_8da4w_ptd.tokenizer.json"),
                           str(out / "llama_8da4w_ptd.ptd"))
    pieces, stats = [], []
    runner.generate("Beautiful is better than", GenerationConfig(temperature=0, max_new_tokens=12, echo=False),
                    pieces.append, stats.append)
    assert stats[-1].num_generated_tokens >= 1 and "".join(pieces).strip(), pieces
    again = []  # the cache is written at the runner's positions: a new conversation reads nothing stale
    runner.reset()
    runner.generate("Beautiful is better than", GenerationConfig(temperature=0, max_new_tokens=12, echo=False),
                    again.append)
    assert again == pieces
    with pytest.raises(RuntimeError):  # without its .ptd the program has no weights
        TextLLMRunner(str(out / "llama_8da4w_ptd.pte"), str(out / "llama_8da4w_ptd.tokenizer.json")).generate(
            "Beautiful", GenerationConfig(temperature=0, max_new_tokens=2, echo=False))


def test_programs_share_the_steps_that_do_not_differ(llm_zoo):
    """The fp32 XNNPACK and portable programs of one model and its two pt2e quantizations export
    once; every program of a model shares its inspection. A torchao scheme is an export of its
    own: that quantization is a source transform, before export."""
    _, events, _ = llm_zoo
    exports = {frozenset(e["labels"]) for e in events if e["step"] == "llm_export"}
    assert frozenset({"//:llama_fp32", "//:llama_portable", *PT2E}) in exports
    assert len(exports) == len(DECODERS) * len(VARIANTS) + 1  # and //:llama_8da4w's
    assert sorted(tuple(e["labels"]) for e in events if e["step"] == "llm_quantize") == [(p,) for p in sorted(PT2E)]
    inspects = [set(e["labels"]) for e in events if e["step"] == "llm_inspect"]
    assert {"//:llama_portable", "//:llama_8da4w", *PT2E, *(f"//:llama_{v}" for v in VARIANTS)} in inspects
    assert len(inspects) == len(DECODERS)


def test_a_second_build_runs_nothing(llm_zoo):
    ws, _, _ = llm_zoo
    proc, events = build(ws, "//:all", events="again.jsonl", extra=("-j", "2"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert by_status(events, "ran") == set() and len(by_status(events, "cached")) > 0


def test_a_tokenizer_edit_reruns_only_what_reads_it(llm_zoo, tmp_path):
    ws, _, _ = llm_zoo
    edited = tmp_path / "ws"
    shutil.copytree(ws, edited, ignore=shutil.ignore_patterns("*.jsonl"))
    tokenizer = json.loads((edited / "tokenizer.json").read_text())
    tokenizer["pre_tokenizer"]["add_prefix_space"] = True  # same vocabulary and special ids, other text
    (edited / "tokenizer.json").write_text(json.dumps(tokenizer, indent=1))
    proc, events = build(edited, "//:llama_fp32", "//:gemma_8da4w_ptd", extra=("-j", "2"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = by_status(events, "ran")
    assert {step for step, _ in ran} == {"llm_tokenizer", "llm_verify"}, ran
    assert {step for step, _ in by_status(events, "cached")} >= {"llm_inspect", "llm_export", "llm_lower"}
    assert json.loads((edited / "out" / "llama_fp32.tokenizer.json").read_text())["pre_tokenizer"]["add_prefix_space"]


def test_max_size_counts_the_pte_and_its_ptd(llm_zoo, tmp_path):
    """A language model's size budget is what a device stores, the .pte and the .ptd together; an
    over-budget program fails its target with both sizes and is not placed. The budget is a check
    of its own: everything else is cached (the new targets declare what //:gemma_8da4w_ptd does)."""
    ws, _, _ = llm_zoo
    edited = tmp_path / "ws"
    shutil.copytree(ws, edited, ignore=shutil.ignore_patterns("*.jsonl", "out"))
    gemma = ('llm_program(name = "{}", model = ":gemma", tokenizer = "tokenizer.json", max_seq_len = 64, '
             'backends = ["xnnpack"], quantize = "torchao_int8_dynact_int4w", quantize_embeddings = "int8", '
             'external_weights = True, max_size = "{}")\n')
    with open(edited / "BUILD.models", "a") as build_file:
        build_file.write(gemma.format("gemma_over", "100kB") + gemma.format("gemma_fits", "1MB"))
    proc, events = build(edited, "//:gemma_over", "//:gemma_fits", extra=("-j", "2", "--keep-going"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    shipped = sum((ws / "out" / f"gemma_8da4w_ptd{ext}").stat().st_size for ext in (".pte", ".ptd"))
    assert f"({shipped:,} bytes: " in proc.stdout and ' .ptd), over its max_size = "100kB"' in proc.stdout, proc.stdout
    assert {step for step, _ in by_status(events, "ran")} == {"budget"}
    assert not (edited / "out" / "gemma_over.pte").exists() and not (edited / "out" / "gemma_over.ptd").exists()
    assert (edited / "out" / "gemma_fits.pte").is_file() and (edited / "out" / "gemma_fits.ptd").is_file()


def test_a_release_ships_the_program_its_weights_and_tokenizer_reproducibly(llm_zoo, tmp_path):
    import tarfile

    ws, _, _ = llm_zoo
    archive = ws / "out" / "chat_release.tar.gz"
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile("MANIFEST.json").read())
    assert {"artifacts/llama_8da4w_ptd.pte", "artifacts/llama_8da4w_ptd.ptd",
            "artifacts/llama_8da4w_ptd.tokenizer.json"} <= names
    llm = {a["label"]: a["llm"] for a in manifest["artifacts"]}
    shipped = llm["//:llama_8da4w_ptd"]
    assert shipped["metadata"]["get_max_seq_len"] == 64 and shipped["metadata"]["get_eos_ids"] == [2]
    assert shipped["sizes"]["weights_bytes"] == (ws / "out" / "llama_8da4w_ptd.ptd").stat().st_size > 0
    assert shipped["generation"]["token_agreement"] >= 0.5 and len(shipped["generation"]["program_tokens"]) == 16
    assert "decode_tokens_per_s" not in json.dumps(manifest)  # timings differ run to run
    clean = tmp_path / "clean"  # a clean build elsewhere, with a cache of its own
    shutil.copytree(WORKSPACE, clean, ignore=shutil.ignore_patterns("__pycache__", "out", "cache"))
    proc, _ = build(clean, "//:chat_release", extra=("-j", "2"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (clean / "out" / "chat_release.tar.gz").read_bytes() == archive.read_bytes()

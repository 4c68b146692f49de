"""Step `llm_verify`: a language-model program checked by generating text.

The .pte (with its .ptd) generates greedily from the reference's prompt on the ExecuTorch
runtime; its tokens and per-step logits are compared with the eager model's. Then it runs once
in ExecuTorch's own TextLLMRunner with the shipped tokenizer: what apps run, it runs.
"""
from __future__ import annotations

import json

from ...values import Spec
from ..verify import Tolerance

RUNNER_PROMPT = "Once upon a time"


class LlmVerifyConfig(Spec):
    tolerance: Tolerance
    external_weights: bool = False
    backends: list[str] = []  # delegate ids the .pte must contain


def runner_check(pte: str, tokenizer: str, ptd: str | None, new_tokens: int) -> dict:
    """One generation in TextLLMRunner; its text (if every piece is UTF-8) and its own stats."""
    from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401  what an app links for custom sdpa
    from executorch.extension.llm.runner import GenerationConfig, TextLLMRunner

    runner = TextLLMRunner(pte, tokenizer, ptd)
    stats, pieces = [], []
    config = GenerationConfig(temperature=0, max_new_tokens=new_tokens, echo=False)
    try:
        runner.generate(RUNNER_PROMPT, config, pieces.append, stats.append)
    except UnicodeDecodeError:  # a byte-level token that is part of a character: the bindings cannot pass it
        runner.reset()
        pieces = None
        runner.generate(RUNNER_PROMPT, config, None, stats.append)
    observed = json.loads(stats[-1].to_json_string())
    return {"prompt": RUNNER_PROMPT, "text": None if pieces is None else "".join(pieces),
            "generated_tokens": observed["generated_tokens"], "prompt_tokens": observed["prompt_tokens"],
            "decode_tokens_per_s": observed.get("decode_token_per_sec")}


def judge(cfg: LlmVerifyConfig, result: dict) -> list[str]:
    tol, problems = cfg.tolerance, []
    if tol.min_token_agreement is not None and result["token_agreement"] < tol.min_token_agreement:
        problems.append(f"token agreement {result['token_agreement']:.2%} is below {tol.min_token_agreement:.2%} "
                        f"(eager {result['eager_tokens']}, program {result['program_tokens']})")
    if tol.min_snr_db is not None and result["min_logits_snr_db"] < tol.min_snr_db:
        problems.append(f"logits SNR falls to {result['min_logits_snr_db']} dB, below {tol.min_snr_db} dB "
                        f"(per step: {result['logits_snr_db']})")
    return problems


def run(ctx) -> dict:
    from safetensors.torch import load_file

    from ...errors import StepError
    from ...lib.llm.generation import ProgramLM, compare
    from ...lib.sizes import pte_sizes

    cfg: LlmVerifyConfig = ctx.config
    pte = str(ctx.input_path("artifact"))
    ptd = str(ctx.input_path("weights")) if cfg.external_weights else None
    sizes = pte_sizes(ctx.input_path("artifact"))
    found = sorted(sizes["delegates"])
    missing = [b for b in cfg.backends if b not in found]
    if missing:
        raise StepError(f"the .pte has no {', '.join(missing)} delegate (it has: {', '.join(found) or 'none'})")
    reference = load_file(str(ctx.input_path("reference")))
    lm = ProgramLM(pte, ptd)
    result = compare(reference, lm)
    result["metadata"] = lm.metadata(["get_max_seq_len", "get_max_context_len", "get_vocab_size", "get_bos_id",
                                      "use_kv_cache", "use_sdpa_with_kv_cache", "enable_dynamic_shape"])
    result["runner"] = runner_check(pte, str(ctx.input_path("tokenizer")), ptd, len(result["eager_tokens"]))
    result["size"] = {"pte_bytes": sizes["total_bytes"], "ptd_bytes": ctx.input_path("weights").stat().st_size if ptd else 0,
                      "delegates": sizes["delegates"]}
    problems = judge(cfg, result)
    if result["runner"]["generated_tokens"] < 1:
        problems.append("TextLLMRunner generated no token")
    ctx.output_path("report.json").write_text(json.dumps(result, indent=1, sort_keys=True))
    if problems:
        raise StepError("generation check failed: " + "; ".join(problems))
    return {"generation": {k: v for k, v in result.items() if k != "logits_snr_db"}}

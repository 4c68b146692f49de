"""Step `llm_seq2seq_verify`: a seq2seq program checked by generating text.

The .pte (with its .ptd) encodes the reference's prompt and decodes greedily on the ExecuTorch
runtime, `encoder` once then `text_decoder` a token a call; its tokens and per-step logits are
compared with the eager model's and judged as llm_verify judges them (the same tolerance). Its
prefill speed is the prompt's tokens over the encoder call and the first text_decoder call.

There is no runner check: ExecuTorch's python bindings have no TextLLMRunner (nor any runner)
for encoder-decoder programs, so what apps run is checked through the methods alone.
"""
from __future__ import annotations

import json

from .verify import LlmVerifyConfig, judge

METADATA = ["get_max_seq_len", "get_vocab_size", "decoder_start_token_id", "get_bos_id", "use_kv_cache",
            "max_hidden_seq_length", "get_max_batch_size"]


def run(ctx) -> dict:
    from safetensors.torch import load_file

    from ...errors import StepError
    from ...lib.llm.generation import compare
    from ...lib.llm.seq2seq import ProgramSeq2seq
    from ...lib.sizes import pte_sizes

    cfg: LlmVerifyConfig = ctx.config
    sizes = pte_sizes(ctx.input_path("artifact"))
    absent = sorted(set(cfg.backends) - set(sizes["delegates"]))
    if absent:
        raise StepError(f"the .pte has no {', '.join(absent)} delegate (it has: {', '.join(sorted(sizes['delegates'])) or 'none'})")
    ptd = str(ctx.input_path("weights")) if cfg.external_weights else None
    lm = ProgramSeq2seq(str(ctx.input_path("artifact")), ptd)
    result = compare(load_file(str(ctx.input_path("reference"))), lm)
    result["metadata"] = lm.metadata(METADATA)
    result["methods"] = sorted(lm.module.method_names())
    result["size"] = {"pte_bytes": sizes["total_bytes"], "ptd_bytes": ctx.input_path("weights").stat().st_size if ptd else 0,
                      "delegates": sizes["delegates"]}
    ctx.output_path("report.json").write_text(json.dumps(result, indent=1, sort_keys=True))
    problems = judge(cfg, result)
    if problems:
        raise StepError("generation check failed: " + "; ".join(problems))
    return {"generation": {k: v for k, v in result.items() if k != "logits_snr_db"}}

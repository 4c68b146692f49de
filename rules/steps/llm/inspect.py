"""Step `llm_inspect`: what a language model is, read before any work on it (model.json).

It refuses, with the reason, an entry that is not a causal LM (or, for seq2seq, not an
encoder-decoder) and a max_seq_len above the model's position limit. Every other step of the
program reads its output, so a refusal stops the target before anything else runs.
"""
from __future__ import annotations

import json

from ...values import Spec
from ..export import ExportConfig


class LlmInspectConfig(Spec):
    model: ExportConfig
    max_seq_len: int
    max_context_len: int
    seq2seq: bool = False


def _facts(model) -> dict:
    from ...lib.llm.causal_lm import position_limit, text_config

    config = text_config(model)
    eos = getattr(model.generation_config, "eos_token_id", None) if model.generation_config else None
    return {
        "class": type(model).__name__,
        "vocab_size": int(getattr(config, "vocab_size")),
        "position_limit": position_limit(model),
        "eos_ids": [eos] if isinstance(eos, int) else list(eos or []),
        "bos_id": getattr(model.generation_config, "bos_token_id", None) if model.generation_config else None,
        "decoder_start_id": getattr(model.config, "decoder_start_token_id", None),
    }


def structure(workspace, model_cfg):
    """The model as declared, built on the meta device: the classes, config and sizes, no weights (a
    real language model's would take seconds and gigabytes here, and the export builds it anyway).
    An entry that cannot build on meta is built for real."""
    import torch

    from ...lib.modelio import load_model

    try:
        with torch.device("meta"):
            return load_model(workspace, model_cfg.entry, model_cfg.init_seed, None, model_cfg.kwargs)
    except Exception:  # noqa: BLE001  (whatever the entry does that meta tensors cannot: the real build says)
        return load_model(workspace, model_cfg.entry, model_cfg.init_seed, model_cfg.weights, model_cfg.kwargs)


def run(ctx) -> dict:
    from ...errors import StepError
    from ...lib.llm.causal_lm import require_causal_lm, require_seq2seq

    cfg: LlmInspectConfig = ctx.config
    model = structure(ctx.workspace, cfg.model)
    (require_seq2seq if cfg.seq2seq else require_causal_lm)(model, cfg.model.entry)
    facts = _facts(model)
    limit = facts["position_limit"]
    for name, value in (("max_seq_len", cfg.max_seq_len), ("max_context_len", cfg.max_context_len)):
        if limit is not None and value > limit:
            raise StepError(f"{name} = {value} is above the model's position limit: {facts['class']} has "
                            f"max_position_embeddings = {limit}; use {name} <= {limit}")
    ctx.output_path("model.json").write_text(json.dumps(facts, indent=1, sort_keys=True))
    return {"model": facts}

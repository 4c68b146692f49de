"""A transformers causal LM as ExecuTorch's LLM runner takes it: forward(tokens, cache_position)
over a static KV cache, exported with transformers' own ExecuTorch recipe."""
from __future__ import annotations

from ...errors import StepError


def text_config(model):
    """The config that holds the decoder's sizes (multimodal models nest it)."""
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def require_causal_lm(model, entry: str) -> None:
    """Refuse what the runner cannot drive: a model without a causal-LM head and a KV cache."""
    from transformers import GenerationMixin, PreTrainedModel

    kind = type(model).__name__
    if not isinstance(model, PreTrainedModel):
        raise StepError(f"entry '{entry}' returned a {kind}, not a transformers model; llm_program needs a causal LM "
                        "(e.g. LlamaForCausalLM(config))")
    if getattr(model.config, "is_encoder_decoder", False):
        raise StepError(f"entry '{entry}' returned {kind}, an encoder-decoder model; declare it with seq2seq_program")
    if not isinstance(model, GenerationMixin) or not kind.endswith("ForCausalLM"):
        raise StepError(f"entry '{entry}' returned {kind}, which is not a causal LM (a *ForCausalLM class with a "
                        "language-model head); llm_program generates text, so it needs one")


def position_limit(model) -> int | None:
    return getattr(text_config(model), "max_position_embeddings", None)


def with_generation_config(model, max_cache_len: int):
    """The generation config transformers' static-cache export recipe requires of the model."""
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        use_cache=True, cache_implementation="static", cache_config={"batch_size": 1, "max_cache_len": max_cache_len})
    return model


def example_call(prompt_len: int, max_seq_len: int) -> tuple[dict, dict]:
    """forward()'s example kwargs and their dynamic shapes: any number of tokens up to max_seq_len - 1."""
    import torch

    tokens = torch.export.Dim("tokens", min=1, max=max_seq_len - 1)
    kwargs = {"input_ids": torch.zeros((1, prompt_len), dtype=torch.long), "cache_position": torch.arange(prompt_len)}
    return kwargs, {"input_ids": {1: tokens}, "cache_position": {0: tokens}}


def export_with_cache(model, max_seq_len: int, max_context_len: int, prompt_len: int):
    """torch.export of the wrapped model, the number of tokens dynamic (prefill and decode are
    one method), the cache in ExecuTorch's layout and ops (executorch_cache). Strict: non-strict
    tracing lifts the cache tensors twice, which lowering rejects."""
    import torch

    from .executorch_cache import ExecuTorchStaticCacheLM

    wrapped = ExecuTorchStaticCacheLM(with_generation_config(model, max_context_len), max_context_len)
    kwargs, dynamic_shapes = example_call(prompt_len, max_seq_len)
    with torch.no_grad():
        return torch.export.export(wrapped, (), kwargs, dynamic_shapes=dynamic_shapes, strict=True)


def require_seq2seq(model, entry: str) -> None:
    """An encoder-decoder with a language-model head (T5, Whisper, BART)."""
    from transformers import PreTrainedModel

    kind = type(model).__name__
    if not isinstance(model, PreTrainedModel) or not getattr(model.config, "is_encoder_decoder", False):
        raise StepError(f"entry '{entry}' returned {kind}, which is not an encoder-decoder model; seq2seq_program needs "
                        "one (e.g. T5ForConditionalGeneration(config)); a decoder-only model is an llm_program")

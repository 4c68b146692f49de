"""transformers' static-cache export recipe, with the cache kept the way ExecuTorch's runner
programs keep it.

transformers' TorchExportableModuleWithStaticCache stores each layer as [batch, heads, seq, dim],
counts the write position itself (a buffer the wrapper resets from cache_position at every call,
then an arange and an add per layer) and writes with index_copy_; the sdpa then transposes the
whole cache on every step. ExecuTorch's own llama programs (CustomKVCache in
examples/models/llama/source_transformation/custom_kv_cache.py) keep [batch, seq, heads, dim],
which is the layout llama::custom_sdpa reads, and write it in place with llama::update_cache at
the runner's input_pos. Here the same transformers model gets that cache, and its rotary
embedding's own cos/sin for every cache position as a table, looked up instead of recomputed
(ExecuTorch's llama reads precomputed tables too). Same logits; fewer, cheaper ops per token.
"""
from __future__ import annotations

import torch
from transformers.cache_utils import StaticLayer
from transformers.integrations.executorch import TorchExportableModuleWithStaticCache

from ...errors import StepError

# rope types whose frequencies depend on the longest position seen, not on the position alone
_POSITION_DEPENDENT = {"dynamic", "longrope"}


def first_position(position_ids: torch.Tensor) -> int:
    """The cache slot of the call's first token (the runner's input_pos), as a size export can check."""
    start = position_ids[0][0].item()
    torch._check_is_size(start)
    return start


class ExecuTorchCacheLayer(StaticLayer):
    """One layer's static cache, [batch, seq, heads, dim], written by ExecuTorch's update_cache."""

    def update(self, key_states, value_states, *args, kwargs=None, **_):
        positions = (kwargs or {}).get("position_ids")  # the decoder layers pass their positions down
        if positions is None:
            raise StepError("the model's attention does not pass position_ids to its KV cache, so its tokens cannot be "
                            "placed at the runner's positions in ExecuTorch's cache")
        start = first_position(positions)
        torch._check(start + key_states.shape[-2] <= self.max_cache_len)
        torch.ops.llama.update_cache(key_states.transpose(1, 2), self.keys, start)
        torch.ops.llama.update_cache(value_states.transpose(1, 2), self.values, start)
        return self.keys, self.values

    @classmethod
    def replacing(cls, layer: StaticLayer) -> "ExecuTorchCacheLayer":
        new = cls(layer.max_cache_len)
        new.keys, new.values = (t.transpose(1, 2).contiguous() for t in (layer.keys, layer.values))
        new.device, new.is_initialized = layer.keys.device, True
        return new


class RopeTable(torch.nn.Module):
    """A rotary embedding's own (cos, sin) for positions 0..length-1, indexed by position."""

    def __init__(self, rotary: torch.nn.Module, length: int, dtype: torch.dtype):
        super().__init__()
        with torch.no_grad():
            cos, sin = rotary(torch.zeros(1, dtype=dtype), position_ids=torch.arange(length)[None])
        self.register_buffer("cos", cos[0].contiguous(), persistent=False)
        self.register_buffer("sin", sin[0].contiguous(), persistent=False)

    def forward(self, x, position_ids):
        # index_select, a plain row gather: aten.index's general kernel costs more per token
        rows = position_ids[0]
        return self.cos.index_select(0, rows).unsqueeze(0), self.sin.index_select(0, rows).unsqueeze(0)


def tabulate_rotary(model: torch.nn.Module, length: int) -> None:
    """Swap every position-only rotary embedding for its table."""
    for name, module in list(model.named_modules()):
        if not type(module).__name__.endswith("RotaryEmbedding") or not hasattr(module, "inv_freq"):
            continue
        if getattr(module, "rope_type", "default") in _POSITION_DEPENDENT:
            continue
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, RopeTable(module, length, model.dtype))


class ExecuTorchStaticCacheLM(TorchExportableModuleWithStaticCache):
    """forward(input_ids, cache_position) -> logits, over ExecuTorch's cache layout and ops."""

    def __init__(self, model, max_cache_len: int):
        super().__init__(model, 1, max_cache_len)
        cache = self.static_cache
        for i, layer in enumerate(cache.layers):
            cache.layers[i] = ExecuTorchCacheLayer.replacing(layer)
            self.register_buffer(f"key_cache_{i}", cache.layers[i].keys, persistent=False)
            self.register_buffer(f"value_cache_{i}", cache.layers[i].values, persistent=False)
            del self._buffers[f"cumulative_length_{i}"]  # the position is the runner's, not a count
        tabulate_rotary(model, max_cache_len)

    def forward(self, input_ids: torch.Tensor, cache_position: torch.Tensor):
        # logits_to_keep=1: the runner reads the last token's logits only, so a prefill computes the
        # head for one token, not for the whole prompt (export_llm's generate_full_logits=False)
        out = self.model(input_ids=input_ids, attention_mask=None, position_ids=cache_position.unsqueeze(0),
                         cache=self.static_cache, use_cache=True, logits_to_keep=1)
        return out.logits

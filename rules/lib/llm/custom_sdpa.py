"""ExecuTorch's custom sdpa (torch.ops.llama.custom_sdpa) as a transformers attention function.

The op takes the query and the whole static cache in [batch, seq, heads, dim] order (the layout
executorch_cache keeps, so the cache is read as it is, not transposed at every step) and the
position of the first query token; it masks causally itself and handles grouped KV heads, so
the model passes no mask (transformers would build one the size of the cache on every call).
This is the adapter optimum-executorch registers ("custom_sdpa"); its package pins another
transformers, so the few lines are here. Export with attn_implementation = NAME."""
from __future__ import annotations

NAME = "executorch_custom_sdpa"


def _attention(module, query, key, value, attention_mask, position_ids=None, scaling=None, **kwargs):
    import torch

    from .executorch_cache import first_position

    if position_ids is None:  # the decoder layers pass the positions; without them there is no start
        raise ValueError("custom sdpa needs position_ids to find the first query token's position")
    dtype = query.dtype
    query = query.transpose(1, 2)  # [batch, heads, seq, dim] from the attention; key and value are the cache's
    query, key, value = (t.to(torch.float32) for t in (query, key, value))  # the op computes in fp32
    output = torch.ops.llama.custom_sdpa(
        query, key, value, start_pos=first_position(position_ids), attn_mask=None, drpout_p=0.0, is_causal=True,
        scale=scaling)
    return output.to(dtype), None


def _no_mask(*args, **kwargs):
    return None


def register() -> str:
    """Make NAME an attention implementation transformers knows (idempotent); returns NAME."""
    from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401  registers torch.ops.llama.*
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    ALL_ATTENTION_FUNCTIONS.register(NAME, _attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, _no_mask)
    return NAME

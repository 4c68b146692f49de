"""Greedy generation, eager and on the ExecuTorch runtime, and how the two compare.

The eager reference is transformers' own generate() with a static cache. The program is driven
twice: free-running (the tokens it would emit), and fed the eager tokens (so that its logits at
each step answer the same question as the eager ones, and their SNR means something).
"""
from __future__ import annotations

import time


def eager_generate(model, prompt, new_tokens: int, max_cache_len: int) -> dict:
    """{"prompt", "tokens", "logits"}: greedy, exactly new_tokens, with the logits of each step."""
    import torch

    with torch.no_grad():
        out = model.generate(  # every prompt token attends: a prompt id equal to the pad id is not padding
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
            cache_implementation="static", cache_config={"batch_size": 1, "max_cache_len": max_cache_len},
            return_dict_in_generate=True, output_logits=True, pad_token_id=0)
    return {"prompt": prompt[0].clone(), "tokens": out.sequences[0, prompt.shape[1]:].clone(),
            "logits": torch.stack([step[0] for step in out.logits]).float()}


class ProgramLM:
    """A loaded .pte (with its .ptd) as a function of (tokens, start position) -> last logits."""

    def __init__(self, pte: str, ptd: str | None):
        import executorch.kernels.quantized  # noqa: F401  embedding_byte & co. for quantized embeddings
        from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401  llama::custom_sdpa
        from executorch.extension.pybindings.portable_lib import _load_for_executorch

        self.module = _load_for_executorch(pte, ptd) if ptd else _load_for_executorch(pte)

    def step(self, tokens: list[int], start: int):
        import torch

        ids = torch.tensor([tokens], dtype=torch.long)
        positions = torch.arange(start, start + len(tokens), dtype=torch.long)
        return self.module.forward((ids, positions))[0][0, -1].float()

    def metadata(self, names: list[str]) -> dict:
        out = {}
        for name in names:
            value = self.module.run_method(name, ())[0]
            out[name] = value.item() if hasattr(value, "item") else value
        return out


def program_generate(lm: ProgramLM, prompt: list[int], new_tokens: int) -> dict:
    """Free-running greedy generation, timed: prefill is the prompt in one call."""
    start = time.perf_counter()
    logits = lm.step(prompt, 0)
    prefill = time.perf_counter() - start
    tokens, pos = [int(logits.argmax())], len(prompt)
    start = time.perf_counter()
    while len(tokens) < new_tokens:
        tokens.append(int(lm.step([tokens[-1]], pos).argmax()))
        pos += 1
    decode = time.perf_counter() - start
    return {"tokens": tokens, "prefill_tokens_per_s": round(len(prompt) / prefill, 1) if prefill else None,
            "decode_tokens_per_s": round((new_tokens - 1) / decode, 1) if decode and new_tokens > 1 else None}


def teacher_forced_logits(lm: ProgramLM, prompt: list[int], reference: list[int]):
    """The program's logits at each step when fed the reference tokens."""
    import torch

    steps = [lm.step(prompt, 0)]
    for i, token in enumerate(reference[:-1]):
        steps.append(lm.step([token], len(prompt) + i))
    return torch.stack(steps)


def compare(reference: dict, lm: ProgramLM) -> dict:
    """Token agreement (free-running and per step), the logits SNR at each step, and speed."""
    from ..runners import snr_db  # the one SNR of every check: capped, NaN-aware, JSON-safe
    prompt, expected = reference["prompt"].tolist(), reference["tokens"].tolist()
    free = program_generate(lm, prompt, len(expected))
    forced = teacher_forced_logits(lm, prompt, expected)
    per_step = [round(snr_db(reference["logits"][i], forced[i]), 2) for i in range(len(expected))]
    agree = [int(forced[i].argmax()) == expected[i] for i in range(len(expected))]
    same_prefix = next((i for i, (a, b) in enumerate(zip(free["tokens"], expected)) if a != b), len(expected))
    return {
        "prompt": prompt, "eager_tokens": expected, "program_tokens": free["tokens"],
        "token_agreement": round(sum(agree) / len(agree), 4), "identical_prefix": same_prefix,
        "logits_snr_db": per_step, "min_logits_snr_db": min(per_step),
        "prefill_tokens_per_s": free["prefill_tokens_per_s"], "decode_tokens_per_s": free["decode_tokens_per_s"],
    }

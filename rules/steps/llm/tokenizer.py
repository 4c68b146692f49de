"""Step `llm_tokenizer`: the program's tokenizer, checked against the model and shipped beside it.

Reads a Hugging Face tokenizer.json (what ExecuTorch's runner loads), refuses ids beyond the
model's embedding table, and finds the BOS and EOS ids the .pte's metadata carries.
"""
from __future__ import annotations

import json
import shutil

from ...values import Spec

# Special tokens by role, as the common tokenizers name them (the first found wins).
BOS_NAMES = ("<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>", "<|im_start|>", "<|endoftext|>")
EOS_NAMES = ("</s>", "<|end_of_text|>", "<|eot_id|>", "<eos>", "<|im_end|>", "<|end|>", "<|endoftext|>")


class LlmTokenizerConfig(Spec):
    file: str  # as declared, for messages
    bos_token: str | None = None  # None: found by its usual names
    eos_tokens: list[str] = []  # [] : found by their usual names, else the model's generation config


def _special(tokenizer, names, declared) -> list[int]:
    from ...errors import StepError

    for name in declared:
        token_id = tokenizer.token_to_id(name)
        if token_id is None:
            raise StepError(f"tokenizer has no token {name!r}")
    found = [tokenizer.token_to_id(n) for n in (declared or names)]
    return [i for i in found if i is not None]


def run(ctx) -> dict:
    from tokenizers import Tokenizer

    from ...errors import StepError

    cfg: LlmTokenizerConfig = ctx.config
    path = ctx.source_paths("tokenizer")[0]
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # the tokenizers library raises plain Exceptions for bad files
        raise StepError(f"tokenizer '{cfg.file}' is not a Hugging Face tokenizer.json: {err}") from None
    model = json.loads(ctx.input_path("model").read_text())
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    top = max(vocab.values(), default=-1)
    if top >= model["vocab_size"]:
        beyond = sorted((i, t) for t, i in vocab.items() if i >= model["vocab_size"])
        shown = ", ".join(f"{t!r} = {i}" for i, t in beyond[:5]) + (" ..." if len(beyond) > 5 else "")
        raise StepError(f"tokenizer '{cfg.file}' has ids up to {top}, beyond the model's embedding table of "
                        f"{model['vocab_size']} rows ({model['class']}): {len(beyond)} tokens cannot be embedded ({shown})")
    bos = _special(tokenizer, BOS_NAMES, [cfg.bos_token] if cfg.bos_token else [])
    eos = _special(tokenizer, EOS_NAMES, cfg.eos_tokens) or model["eos_ids"]
    tokens = {"bos_id": bos[0] if bos else model["bos_id"], "eos_ids": eos[:1] if not cfg.eos_tokens else eos,
              "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True)}
    if tokens["bos_id"] is None or not tokens["eos_ids"]:
        raise StepError(f"tokenizer '{cfg.file}' names no BOS or EOS token the runner can use; declare "
                        "bos_token and eos_tokens on the program")
    ctx.output_path("tokens.json").write_text(json.dumps(tokens, sort_keys=True))
    shutil.copyfile(path, ctx.output_path("tokenizer.json"))
    return {"tokenizer": tokens}

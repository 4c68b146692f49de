"""A transformers encoder-decoder LM (T5) as one ExecuTorch program: an `encoder` method and a
`text_decoder` method over a static self-attention KV cache, exported with transformers' own
recipe (Seq2SeqLMExportableModule); the eager model's greedy reference; and the program seen as a
ProgramLM, so that generation.compare() judges it as it judges a decoder-only one."""
from __future__ import annotations

import contextlib

import torch

from ...errors import StepError
from .generation import ProgramLM

# The method names of optimum-executorch and of ExecuTorch's AsrRunner.
ENCODER, DECODER = "encoder", "text_decoder"


class _ScaledHead(torch.nn.Module):
    """head(x * scale): what T5's forward does before its lm_head when scale_decoder_outputs."""

    def __init__(self, scale: float, head: torch.nn.Module):
        super().__init__()
        self.scale, self.head = scale, head

    def forward(self, x):
        return self.head(x * self.scale)


@contextlib.contextmanager
def _decoder_output_scale(model):
    """transformers' Seq2SeqLMDecoderExportableModuleWithStaticCache calls lm_head on the decoder's
    output directly, skipping original T5's `* d_model**-0.5` (scale_decoder_outputs): its logits
    come out sqrt(d_model) times too large. The head is swapped only while the wrapper is built."""
    head = model.lm_head
    if getattr(model.config, "scale_decoder_outputs", False):
        model.lm_head = _ScaledHead(model.config.d_model ** -0.5, head)
    try:
        yield
    finally:
        model.lm_head = head


def export_seq2seq(model, max_cache_len: int, max_encoder_len: int) -> dict:
    """{ENCODER: ep, DECODER: ep}. The encoder takes input_ids [1, S], S dynamic up to
    max_encoder_len; the decoder one token, the encoder's output and the token's cache position."""
    from transformers.integrations.executorch import Seq2SeqLMExportableModule

    start = model.config.decoder_start_token_id
    if start is None:
        raise StepError(f"{type(model).__name__} has no decoder_start_token_id in its config: the decoder cannot "
                        "start; set it (T5 starts from its pad id, 0)")
    exportable = Seq2SeqLMExportableModule(model, batch_size=1, max_hidden_seq_length=max_encoder_len,
                                           cache_implementation="static", max_cache_length=max_cache_len)
    ids = torch.ones((1, min(8, max_encoder_len)), dtype=torch.long)  # 0 or 1 would specialize the length
    with torch.no_grad():
        hidden = model.get_encoder()(input_ids=ids).last_hidden_state
    with _decoder_output_scale(model):
        exportable.export(encoder_input_ids=ids, encoder_hidden_states=hidden,
                          decoder_input_ids=torch.tensor([[start]], dtype=torch.long),
                          cache_position=torch.tensor([0], dtype=torch.long))
    return {ENCODER: exportable.exported_encoder, DECODER: exportable.exported_decoder}


def eager_generate(model, prompt, new_tokens: int) -> dict:
    """{"prompt", "tokens", "logits"} as generation.eager_generate gives them: greedy from the
    decoder's start token, up to new_tokens (fewer if the model emits EOS), each step's raw logits."""
    with torch.no_grad():
        out = model.generate(  # every prompt token attends: a prompt id equal to the pad id is not padding
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens, do_sample=False, num_beams=1,
            return_dict_in_generate=True, output_logits=True)
    return {"prompt": prompt[0].clone(), "tokens": out.sequences[0, 1:].clone(),  # without the start token
            "logits": torch.stack([step[0] for step in out.logits]).float()}


class ProgramSeq2seq(ProgramLM):
    """The .pte as ProgramLM's step(tokens, start) -> last logits. The call at start 0 encodes
    `tokens` (the prompt) and decodes the start token; later calls decode their tokens, one per
    text_decoder call. Decoder positions count from the start token: position = start - prompt + 1."""

    def __init__(self, pte: str, ptd: str | None):
        super().__init__(pte, ptd)
        meta = self.metadata(["decoder_start_token_id", "max_hidden_seq_length"])
        self.start_token, self.max_encoder_len = meta["decoder_start_token_id"], meta["max_hidden_seq_length"]
        self.encoded, self.prompt_len = None, 0

    def step(self, tokens: list[int], start: int):
        if start == 0:
            self._encode(tokens)
            tokens, position = [self.start_token], 0
        else:
            position = start - self.prompt_len + 1
        for i, token in enumerate(tokens):
            out = self.module.run_method(DECODER, (torch.tensor([[token]], dtype=torch.long), self.encoded,
                                                   torch.tensor([position + i], dtype=torch.long)))
        return out[0][0, -1].float()

    def _encode(self, prompt: list[int]) -> None:
        # Outside the exported bounds the runtime fails, and an empty prompt corrupts the loaded module.
        if not 1 <= len(prompt) <= self.max_encoder_len:
            raise StepError(f"a prompt of {len(prompt)} tokens is outside the encoder's 1..{self.max_encoder_len}")
        self.encoded = self.module.run_method(ENCODER, (torch.tensor([prompt], dtype=torch.long),))[0]
        self.prompt_len = len(prompt)

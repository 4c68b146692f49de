"""A tiny T5 (an encoder-decoder) from its transformers config, with the zoo tokenizer's
vocabulary: <pad> = 0 is also the decoder's start token, as in T5, and </s> = 2 ends the text."""
import torch
from torch import nn
from transformers import T5Config, T5ForConditionalGeneration

from models.decoders import VOCAB, peaked


def tiny_t5():
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
        pad_token_id=0, eos_token_id=2, decoder_start_token_id=0))
    # T5 ties its head to the shared embedding, and a random model then echoes its input token (the
    # start token, forever): a head of its own, drawn as T5 draws an untied one. The model still
    # scales the decoder's output by d_model**-0.5 (original T5), which the export must keep.
    model.lm_head.weight = nn.Parameter(torch.randn_like(model.shared.weight))
    return peaked(model)

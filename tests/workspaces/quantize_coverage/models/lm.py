"""Models for tests/e2e/test_quantize_coverage.py: a scheme quantizes most of one, little of the other."""
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

VOCAB = 128


class GPT2(nn.Module):
    """Tiny GPT-2: its projections are transformers' Conv1D, and lm_head is tied to the token embedding."""

    def __init__(self):
        super().__init__()
        config = GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=VOCAB, n_positions=32,
                            bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1)
        self.net = GPT2LMHeadModel(config)

    def forward(self, input_ids):
        return self.net(input_ids, use_cache=False, return_dict=False)[0]


class TiedLM(nn.Module):
    """All its weight bytes in one table, shared by the embedding and the output head: quantizing
    the head keeps the float table for the embedding and adds a quantized copy."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 64)
        self.head = nn.Linear(64, VOCAB, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, input_ids):
        return self.head(torch.tanh(self.embed(input_ids)))

"""GPT-2-style decoder from transformers' GPT2Config, tiny: token ids in, logits out.
Its projections are transformers' Conv1D, not nn.Linear, and its attention is transformers'
default (sdpa), whose core-ATen decomposition torch 2.13 gets wrong at batch >= 2 unless
modelbuild corrects it (rules/lib/programs.py, sound_decompositions)."""
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

VOCAB = 128


class GPT2(nn.Module):
    def __init__(self):
        super().__init__()
        config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2, n_positions=32, use_cache=False,
                            bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1)
        self.net = GPT2LMHeadModel(config)

    def forward(self, input_ids):
        return self.net(input_ids, return_dict=False)[0]

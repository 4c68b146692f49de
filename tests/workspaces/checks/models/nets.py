"""Small real models: a BERT-style encoder from transformers, an MLP, a model whose outputs
vanish, and one that returns its token ids (so a check's reference scale shows their range)."""
import torch
import transformers
from torch import nn


def TinyBert():
    config = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                     vocab_size=100, max_position_embeddings=32)
    return transformers.BertModel(config)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 16)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class Vanishing(nn.Module):
    """Outputs of about 1e-21, as a deep randomly initialized network's can be."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 16, bias=False)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)) * 1e-20)


class Tokens(nn.Module):
    def forward(self, ids):
        return ids.to(torch.float32)

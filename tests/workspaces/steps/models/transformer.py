"""The Core ML Tools guide's small Transformer (attention plus a SwiGLU feed-forward)."""
import torch.nn.functional as F
from torch import nn

from models.layers import Attention


class Transformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = Attention()
        self.w1 = nn.Linear(32, 16)
        self.w2 = nn.Linear(16, 32)
        self.w3 = nn.Linear(32, 16)

    def forward(self, embedding):
        attention = self.attention(embedding)
        x = embedding + attention
        y = self.w2(F.silu(self.w1(x)) * self.w3(x))
        return x + y

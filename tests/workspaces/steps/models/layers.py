"""Building blocks shared by the example models."""
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """The single-head attention layer of the Core ML Tools guide."""

    def __init__(self):
        super().__init__()
        self.wq = nn.Linear(32, 64)
        self.wk = nn.Linear(32, 64)
        self.wv = nn.Linear(32, 64)
        self.wo = nn.Linear(64, 32)

    def forward(self, embedding):
        q = self.wq(embedding)
        k = self.wk(embedding)
        v = self.wv(embedding)
        attention = F.scaled_dot_product_attention(q, k, v)
        return self.wo(attention)

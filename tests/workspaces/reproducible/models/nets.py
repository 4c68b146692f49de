"""Tiny models for the reproducibility test: one per export mode, big enough to compress."""
import torch


class Block(torch.nn.Module):
    """A pre-norm feed-forward block: LayerNorm, Linear, GELU, Linear, and the residual."""

    def __init__(self, width: int = 32, hidden: int = 64):
        super().__init__()
        self.norm = torch.nn.LayerNorm(width)
        self.up = torch.nn.Linear(width, hidden)
        self.down = torch.nn.Linear(hidden, width)

    def forward(self, x):
        return x + self.down(torch.nn.functional.gelu(self.up(self.norm(x))))


class Pair(torch.nn.Module):
    """Two inputs sharing a dynamic batch, exported strict (which records id()-based keys)."""

    def forward(self, x, y):
        return torch.tanh(x) * y + x

"""A model of the user's own: an MLP-Mixer with LayerNorm and GELU (tokens mixed, then channels)."""
from torch import nn


class MlpBlock(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class MixerLayer(nn.Module):
    def __init__(self, tokens, dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mlp = MlpBlock(tokens, 64)
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = MlpBlock(dim, 128)

    def forward(self, x):  # x: [batch, tokens, dim]
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class Mixer(nn.Module):
    def __init__(self, tokens=16, dim=64, layers=1, classes=10):
        super().__init__()
        self.layers = nn.Sequential(*(MixerLayer(tokens, dim) for _ in range(layers)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        return self.head(self.norm(self.layers(x)).mean(1))


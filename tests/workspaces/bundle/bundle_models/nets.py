"""A tiny model for the bundle step's tests: two outputs, so a failure can name which one."""
import torch


class TwoHeads(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(16, 32)
        self.logits = torch.nn.Linear(32, 8)
        self.score = torch.nn.Linear(32, 1)

    def forward(self, x):
        h = torch.relu(self.body(x))
        return self.logits(h), torch.tanh(self.score(h))

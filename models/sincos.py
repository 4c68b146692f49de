"""The torch.export tutorial's first module: sin(x) + cos(y)."""
import torch


class SinCos(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = torch.sin(x)
        b = torch.cos(y)
        return a + b

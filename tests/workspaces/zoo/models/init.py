"""Weights that make a randomly initialized CNN a meaningful test: BatchNorm with running
statistics and affine terms that are not the identity (so folding them into the conv is
checked), and convs scaled to keep activations near unit size through the network."""
import torch
from torch import nn


def lively(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            with torch.no_grad():
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model

"""Imported by the light fork server before it forks the export workers: torch.export a two-op model once.

A process's first torch.export imports and sets up Dynamo, FX's passes and the export machinery:
about 2 s, then cached for the life of the process. Done here, every worker inherits it (and so does
the second fork server, forked from this one) instead of paying it in its first action.

The server forks after this, so it must leave no thread behind (fork_safe).
"""
import torch

from .programs import fork_safe, sound_decompositions


def _warm() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    with fork_safe(), torch.no_grad(), sound_decompositions():
        torch.export.export(model, (torch.zeros(1, 4),))


_warm()

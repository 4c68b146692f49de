"""Reading and writing exported programs (.pt2): the one place steps load a program from the cache.

A program read back from a file must behave in every later step exactly as the program that was
saved would have: whatever torch.export's round trip changes is undone here, once, for every step.
"""
from __future__ import annotations


def load_program(path):
    """The ExportedProgram saved at `path`."""
    import torch

    return torch.export.load(str(path))


def save_program(ep, path) -> None:
    import torch

    torch.export.save(ep, str(path))

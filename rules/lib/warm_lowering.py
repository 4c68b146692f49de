"""Imported by the fork server before it forks the workers: lower a two-op model to XNNPACK once.

A process's first XNNPACK lowering builds the partitioner's pattern graphs (bilinear upsampling and
attention, each traced with torch.export) and torch's tables of decomposable ops: about 2.7 s,
cached for the life of the process. Done here, every worker inherits them instead of paying for
them in its first partition action.

The server forks after this, so it must leave no thread behind (fork_safe).
"""
import torch
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.exir import to_edge_transform_and_lower

from .programs import fork_safe, shared_provenance, sound_decompositions


def _warm() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    with fork_safe(), torch.no_grad(), sound_decompositions(), shared_provenance():
        program = torch.export.export(model, (torch.zeros(1, 4),))
        to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()


_warm()

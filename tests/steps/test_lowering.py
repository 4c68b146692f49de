"""What the partition step does to lower faster: share node provenance instead of deep-copying it,
which may not change a byte of a .pte. (The fork servers' warm-ups: test_light_steps.py.)"""
from __future__ import annotations

import torch
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.exir import to_edge_transform_and_lower
from torch import nn
from torch.fx.traceback import NodeSource

from rules.lib.programs import shared_provenance, sound_decompositions


class Block(nn.Module):
    """A BatchNorm depthwise-separable block and a linear head: what MobileNetV2 is made of."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU6(),
            nn.Conv2d(8, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.features(x)).softmax(-1)


def _pte(shared: bool) -> bytes:
    program = torch.export.export(Block().eval(), (torch.randn(1, 3, 16, 16),))
    with sound_decompositions():
        if not shared:
            return to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
        with shared_provenance():
            return to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer


def test_shared_provenance_lowers_to_the_same_bytes_and_is_undone_after():
    assert _pte(shared=True) == _pte(shared=False)
    assert "__deepcopy__" not in vars(NodeSource)

"""What the partition step does to lower faster: share node provenance instead of deep-copying it,
and warm the fork server up with one lowering. Neither may change a byte of a .pte, nor leave the
server in a state a forked worker cannot run in."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.exir import to_edge_transform_and_lower
from torch import nn
from torch.fx.traceback import NodeSource

from rules.lib.programs import shared_provenance, sound_decompositions

REPO = Path(__file__).resolve().parents[2]


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


def test_the_warm_up_leaves_no_thread_for_a_forked_worker_to_hang_on():
    """A thread alive at fork holds locks the child inherits without the thread; OpenMP's team and
    tqdm's monitor are the two a lowering starts. A child forked after the warm-up runs a parallel op."""
    probe = """
import os, torch
before = len(os.listdir("/proc/self/task"))
threads = torch.get_num_threads()
import rules.lib.warm_lowering
assert len(os.listdir("/proc/self/task")) == before, (before, os.listdir("/proc/self/task"))
assert torch.get_num_threads() == threads
pid = os.fork()
if pid == 0:
    x = torch.randn(512, 512)
    (x @ x).sum().item()  # intra-op parallel: hangs where a team was inherited
    os._exit(0)
assert os.waitpid(pid, 0)[1] == 0
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]

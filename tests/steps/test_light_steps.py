"""The light steps (StepKind.light: export, which also records the eager outputs) run in workers
forked from a server that imported torch alone, or in full workers that imported executorch and
warmed the partitioner up: whichever is free. So their results must not depend on it, to the byte,
and the light server's warm-up must leave no thread that a forked worker would hang on."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# A BatchNorm conv block and an attention block with a dynamic sequence: what the real models are made of.
MODELS = '''import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                                  nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.norm = nn.LayerNorm(8)

    def forward(self, image, tokens):
        h = self.norm(tokens + self.conv(image)[:, None, :])
        return self.attn(h, h, h, need_weights=False)[0].softmax(-1), h.argmax(-1)


def model():
    return Net()
'''

PROBE = '''
import importlib, sys, types
from pathlib import Path
import torch
mode, workspace, out = sys.argv[1:]
importlib.import_module("rules.lib.warm_export")
if mode == "full":
    from rules import RULESET
    for module in RULESET.worker_imports + ("rules.lib.warm_lowering",):
        importlib.import_module(module)
assert ("executorch.exir" in sys.modules) == (mode == "full"), mode
from rules.steps import export
cfg = export.ExportConfig.model_validate({
    "entry": "models.net:model", "inputs": {"image": {"shape": [2, 3, 8, 8]}, "tokens": {"shape": [2, 5, 8], "seed": 1}},
    "dynamic_shapes": {"tokens": {1: {"name": "seq", "min": 2, "max": 9}}}})
ctx = types.SimpleNamespace(config=cfg, workspace=Path(workspace), output_path=lambda name: Path(out) / name)
export.run(ctx)
'''


def _run(mode: str, workspace: Path, out: Path) -> dict[str, bytes]:
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-c", PROBE, mode, str(workspace), str(out)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_a_light_step_makes_the_same_bytes_in_a_light_worker_and_in_a_full_one(tmp_path: Path):
    (tmp_path / "ws" / "models").mkdir(parents=True)
    (tmp_path / "ws" / "models" / "__init__.py").write_text("")
    (tmp_path / "ws" / "models" / "net.py").write_text(MODELS)
    light = _run("light", tmp_path / "ws", tmp_path / "light")
    full = _run("full", tmp_path / "ws", tmp_path / "full")
    assert sorted(light) == ["outputs.safetensors", "program.pt2"]
    assert light == full

    from rules.lib import eager_outputs

    outputs = eager_outputs.read(tmp_path / "light" / "outputs.safetensors")
    # the example, then the dynamic dim at its min and at its max: each case's two outputs
    assert [(case, [tuple(t.shape) for t in tensors]) for case, tensors in outputs.items()] == [
        ("example", [(2, 5, 8), (2, 5)]), ("min (seq=2)", [(2, 2, 8), (2, 2)]), ("max (seq=9)", [(2, 9, 8), (2, 9)])]


@pytest.mark.parametrize("warm_up", ["rules.lib.warm_export", "rules.lib.warm_lowering"])
def test_a_warm_up_leaves_no_thread_for_a_forked_worker_to_hang_on(warm_up: str):
    """A thread alive at fork holds locks the child inherits without the thread; OpenMP's team and
    tqdm's monitor are the two that torch.export and a lowering start. A child forked after the
    warm-up runs a parallel op."""
    probe = f"""
import os, torch
before = len(os.listdir("/proc/self/task"))
threads = torch.get_num_threads()
import {warm_up}
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

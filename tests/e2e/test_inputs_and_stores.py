"""Weights, data files and glob(); moving the cache; clean."""
from __future__ import annotations

from pathlib import Path

import torch
from helpers import build, by_status, read_events, run_cli
from safetensors.torch import save_file

NET = '''import torch


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(x)
'''

BUILD = '''model(
    name = "tiny",
    entry = "models.tiny:Tiny",
    inputs = {"x": tensor([2, 8])},
    weights = "tiny.safetensors",
    data = glob(["assets/*.txt"]),
)
executorch_program(name = "tiny_portable", model = ":tiny")
'''


def workspace(root: Path) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "WORKSPACE.models").write_text("")
    (root / "models" / "__init__.py").write_text("")
    (root / "models" / "tiny.py").write_text(NET)
    (root / "assets").mkdir()
    (root / "assets" / "labels.txt").write_text("a\nb\nc\nd\n")
    (root / "assets" / "ignored.bin").write_bytes(b"\x00")
    (root / "BUILD.models").write_text(BUILD)
    save_file({"fc.weight": torch.full((4, 8), 0.5), "fc.bias": torch.arange(4.0)}, root / "tiny.safetensors")
    return root


def test_weights_and_globbed_data_are_inputs(tmp_path: Path):
    from executorch.runtime import Runtime

    ws = workspace(tmp_path)
    proc, events = build(ws)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    x = torch.ones(2, 8)
    method = Runtime.get().load_program(str(ws / "out" / "tiny_portable.pte")).load_method("forward")
    torch.testing.assert_close(method.execute([x])[0], torch.full((2, 4), 4.0) + torch.arange(4.0))

    # A changed data file the glob matches re-exports; a file it does not match changes nothing.
    (ws / "assets" / "ignored.bin").write_bytes(b"\x01")
    proc, events = build(ws)
    assert by_status(events, "ran") == set()
    (ws / "assets" / "labels.txt").write_text("a\nb\nc\nz\n")
    proc, events = build(ws, extra=("--explain",))
    assert ("export", "//:tiny_portable") in by_status(events, "ran")
    assert "input 'data' changed: assets/labels.txt" in proc.stdout

    # New weights: rebuilt, and verification compares against the model with those weights.
    save_file({"fc.weight": torch.full((4, 8), -1.0), "fc.bias": torch.zeros(4)}, ws / "tiny.safetensors")
    proc, events = build(ws)
    assert proc.returncode == 0 and ("verify", "//:tiny_portable") in by_status(events, "ran")
    method = Runtime.get().load_program(str(ws / "out" / "tiny_portable.pte")).load_method("forward")
    torch.testing.assert_close(method.execute([x])[0], torch.full((2, 4), -8.0))


def test_weights_that_do_not_fit_are_a_clear_error(tmp_path: Path):
    ws = workspace(tmp_path)
    save_file({"fc.weight": torch.zeros(4, 8)}, ws / "tiny.safetensors")
    proc, _ = build(ws)
    assert proc.returncode == 1
    assert "weights tiny.safetensors do not fit" in proc.stdout and "fc.bias" in proc.stdout  # missing key named
    save_file({"fc.weight": torch.zeros(3, 8), "fc.bias": torch.zeros(4)}, ws / "tiny.safetensors")
    proc, _ = build(ws)
    assert "size mismatch for fc.weight" in proc.stdout and "Traceback" not in proc.stdout


def test_cache_dir_flag_and_env_and_clean(tmp_path: Path):
    ws = workspace(tmp_path / "ws")
    elsewhere = tmp_path / "shared-cache"
    proc = run_cli(ws, "build", "--cache-dir", str(elsewhere), "--build-events", "a.jsonl")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (elsewhere / "cas").is_dir() and not (ws / "cache").exists()
    # The same cache through the environment: nothing to do.
    proc = run_cli(ws, "build", "--build-events", "b.jsonl", env={"MODELBUILD_CACHE_DIR": str(elsewhere)})
    assert {e["status"] for e in read_events(ws / "b.jsonl")} == {"cached"}

    proc = run_cli(ws, "clean", "--cache", "--cache-dir", str(elsewhere))
    assert proc.returncode == 0 and not (ws / "out").exists() and list(elsewhere.iterdir()) == []

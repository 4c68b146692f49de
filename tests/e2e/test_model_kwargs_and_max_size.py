"""model(kwargs = {...}): the entry is called with plain values from BUILD.models, which key its
actions like any field; kwargs the entry does not take fail its export with what it takes. And an
artifact's max_size: a larger artifact fails its target with both sizes."""
from __future__ import annotations

from pathlib import Path

from helpers import build, by_status

NET = '''import torch


class Net(torch.nn.Module):
    def __init__(self, width=4, act="relu"):
        super().__init__()
        self.fc = torch.nn.Linear(4, width)
        self.act = torch.nn.ReLU() if act == "relu" else torch.nn.Tanh()

    def forward(self, x):
        return self.act(self.fc(x))
'''

BUILD = '''
model(name = "narrow", entry = "models.net:Net", inputs = {"x": tensor([2, 4])})
model(name = "wide", entry = "models.net:Net", inputs = {"x": tensor([2, 4])}, kwargs = {"width": 64, "act": "tanh"})
model(name = "wrong", entry = "models.net:Net", inputs = {"x": tensor([2, 4])}, kwargs = {"depth": 2})
pt2_program(name = "narrow_pt2", model = ":narrow")
pt2_program(name = "wide_pt2", model = ":wide")
pt2_program(name = "wrong_pt2", model = ":wrong")
'''


def test_kwargs_reach_the_entry_and_key_its_actions(tmp_path: Path):
    (tmp_path / "WORKSPACE.models").write_text("")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("")
    (tmp_path / "models" / "net.py").write_text(NET)
    (tmp_path / "BUILD.models").write_text(BUILD)
    proc, events = build(tmp_path, "//...", extra=("--keep-going", "-j", "1"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert {label for _, label in by_status(events, "ran")} >= {"//:narrow_pt2", "//:wide_pt2"}
    narrow, wide = (tmp_path / "out" / f"{n}_pt2.pt2" for n in ("narrow", "wide"))
    assert wide.stat().st_size > narrow.stat().st_size + 4 * 60 * 4  # 64 outputs of 4 floats against 4
    assert by_status(events, "failed") == {("export", "//:wrong_pt2")}
    assert ("kwargs do not fit entry 'models.net:Net': got an unexpected keyword argument 'depth' "
            "(it takes: width, act)") in proc.stdout, proc.stdout


def test_an_artifact_over_its_max_size_fails_with_both_sizes_and_is_not_placed(tmp_path: Path):
    """max_size is a check of its own: it holds with verify = False too, and a bad size is refused at load."""
    (tmp_path / "WORKSPACE.models").write_text("")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("")
    (tmp_path / "models" / "net.py").write_text(NET)
    (tmp_path / "BUILD.models").write_text(
        'model(name = "wide", entry = "models.net:Net", inputs = {"x": tensor([2, 4])}, kwargs = {"width": 256})\n'
        'pt2_program(name = "fits", model = ":wide", max_size = "1MB")\n'
        'pt2_program(name = "over", model = ":wide", max_size = "2kB", verify = False)\n')
    proc, events = build(tmp_path, "//...", extra=("--keep-going", "-j", "1"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert by_status(events, "failed") == {("budget", "//:over")}
    size = (tmp_path / "out" / "fits.pt2").stat().st_size
    text = " ".join(proc.stdout.split())
    assert (f'the artifact is {size / 1000:.1f} kB ({size:,} bytes), over its max_size = "2kB" (2,000 bytes)' in text), text
    assert not (tmp_path / "out" / "over.pt2").exists()
    (tmp_path / "BUILD.models").write_text(
        'model(name = "wide", entry = "models.net:Net", inputs = {"x": tensor([2, 4])})\n'
        'pt2_program(name = "fits", model = ":wide", max_size = "2 parsecs")\n')
    proc, _ = build(tmp_path, "//...", events="bad.jsonl")
    assert proc.returncode == 2 and ("BUILD.models:2: pt2_program() field 'max_size': expected a size such as 500M, "
                                     "2MB, 1.5GB or 10GiB (got '2 parsecs')") in proc.stderr, proc.stderr

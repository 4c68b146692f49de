"""Edits rebuild exactly what they should, read from the build events."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import build, by_status, copy_example

BUILD = '''
model(
    name = "transformer",
    entry = "models.transformer:Transformer",
    inputs = {"embedding": tensor([2, 32])},
    dynamic_shapes = {"embedding": {0: dim("batch", min = 1, max = 64)}},
)
pt2_program(name = "transformer_pt2", model = ":transformer")
executorch_program(name = "transformer_portable", model = ":transformer")

model(name = "sincos", entry = "models.sincos:SinCos",
      inputs = {"x": tensor([4, 4], seed = 1), "y": tensor([4, 4], seed = 2)})
executorch_program(name = "sincos_portable", model = ":sincos")
coreml_package(name = "sincos_mlpackage", model = ":sincos", compute_precision = "float16")
'''


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = copy_example(tmp_path_factory.mktemp("incremental"))
    (ws / "BUILD.models").write_text(BUILD)
    (ws / "models" / "vision" / "BUILD.models").unlink()
    proc, events = build(ws)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert by_status(events, "cached") == set() and len(by_status(events, "ran")) == 10  # 6 steps + 4 checks
    return ws


def test_touch_without_change_rebuilds_nothing(ws: Path):
    for path in [ws / "models" / "layers.py", ws / "models" / "sincos.py", ws / "BUILD.models"]:
        os.utime(path, None)
        path.write_text(path.read_text())  # rewrite the same bytes: new mtime and ctime
    proc, events = build(ws)
    assert proc.returncode == 0, proc.stderr
    assert by_status(events, "ran") == set() and len(by_status(events, "cached")) == 10
    assert "6 targets up to date, 0 actions run" in proc.stdout


def test_editing_an_imported_module_rebuilds_exactly_that_model(ws: Path):
    layers = ws / "models" / "layers.py"
    layers.write_text(layers.read_text().replace("return self.wo(attention)", "return self.wo(attention) * 0.5"))
    proc, events = build(ws)
    assert proc.returncode == 0, proc.stderr
    assert by_status(events, "ran") == {
        ("export", "//:transformer_portable"),
        ("partition", "//:transformer_portable"),
        ("verify", "//:transformer_portable"),
        ("verify", "//:transformer_pt2"),
    }
    assert {label for _, label in by_status(events, "cached")} == {
        "//:sincos_portable", "//:sincos_mlpackage"
    }


def test_changing_one_artifact_option_rebuilds_only_its_own_steps(ws: Path):
    build_file = ws / "BUILD.models"
    build_file.write_text(build_file.read_text().replace('compute_precision = "float16"', 'compute_precision = "float32"'))
    proc, events = build(ws)
    assert proc.returncode == 0, proc.stderr
    # The shared export and the decomposition before conversion are reused.
    assert by_status(events, "ran") == {("coreml_convert", "//:sincos_mlpackage"), ("verify", "//:sincos_mlpackage")}
    assert ("export", "//:sincos_mlpackage") in by_status(events, "cached")


def test_an_unchanged_output_stops_the_rebuild_early(ws: Path):
    # A docstring edit (a docstring is code: __doc__ changes): export reruns, its .pt2 is identical,
    # so the lowering is a cache hit (keys are over input contents, as with ninja's restat). So is
    # the check of the .pte: the eager outputs, recorded by the export, are the same too. The Core ML
    # check reruns: it cannot run the package here and reads the model itself.
    sincos = ws / "models" / "sincos.py"
    sincos.write_text(sincos.read_text().replace('"""The torch.export', '"""Edited: the torch.export'))
    proc, events = build(ws)
    assert proc.returncode == 0, proc.stderr
    assert by_status(events, "ran") == {
        ("export", "//:sincos_mlpackage"), ("verify", "//:sincos_mlpackage"),
    }
    assert {("partition", "//:sincos_portable"), ("coreml_convert", "//:sincos_mlpackage"),
            ("verify", "//:sincos_portable")} <= by_status(events, "cached")


def test_a_comment_edit_reruns_nothing_and_serves_what_a_cold_build_makes(ws: Path, tmp_path: Path):
    # Model modules key their actions by their code: comments and blank lines (which move every
    # line below them) change no key. What out/ then holds must be what a cold build of the
    # edited workspace makes, byte for byte: the programs keep no line numbers of the user's code.
    layers, sincos = ws / "models" / "layers.py", ws / "models" / "sincos.py"
    layers.write_text("# a header comment\n\n\n" + layers.read_text().replace(
        "attention = F.scaled_dot_product_attention(q, k, v)",
        "# the guide's attention\n        attention = F.scaled_dot_product_attention(q, k, v)  # one head"))
    sincos.write_text(sincos.read_text().replace("        b = torch.cos(y)\n", "\n        b = torch.cos(y)  # traced\n"))
    proc, events = build(ws)
    assert proc.returncode == 0, proc.stderr
    assert by_status(events, "ran") == set() and len(by_status(events, "cached")) == 10
    cold = tmp_path / "cold"
    shutil.copytree(ws, cold, ignore=shutil.ignore_patterns("cache", "out", "__pycache__", "*.jsonl"))
    proc, events = build(cold)
    assert proc.returncode == 0, proc.stderr
    assert len(by_status(events, "ran")) == 10

    def tree(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    served, made = tree(ws / "out"), tree(cold / "out")
    assert served.keys() == made.keys() and len(served) >= 4
    assert [name for name in served if served[name] != made[name]] == []

"""Visibility, as in Bazel: a target says who may depend on it, a package sets the default for its
targets, everything is public by default, and a dependency it does not allow is refused at load
with both labels, where each is declared, and what would allow it."""
from __future__ import annotations

from pathlib import Path

from helpers import run_cli

MODEL = 'model(name = "{name}", entry = "models.m:M", inputs = {{"x": tensor([2, 3])}}{extra})\n'


def workspace(root: Path, packages: dict[str, str]) -> Path:
    (root / "WORKSPACE.models").write_text("")
    (root / "models").mkdir()
    (root / "models" / "__init__.py").write_text("")
    (root / "models" / "m.py").write_text("import torch\n\n\nclass M(torch.nn.Module):\n"
                                          "    def forward(self, x):\n        return x + 1\n")
    for package, text in packages.items():
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "BUILD.models").write_text(text)
    return root


def query(ws: Path, *patterns: str):
    return run_cli(ws, "query", *patterns, "--output", "label")


VISION = ('package(default_visibility = ["//apps/..."])\n\n'
          + MODEL.format(name="m", extra="")
          + MODEL.format(name="open", extra=', visibility = ["//visibility:public"]')
          + MODEL.format(name="mine", extra=', visibility = ["//visibility:private"]')
          + 'pt2_program(name = "local", model = ":mine")\n')


def test_a_package_default_allows_what_it_names_and_a_target_may_widen_it(tmp_path: Path):
    ws = workspace(tmp_path, {
        "models/vision": VISION,
        "apps/camera": 'pt2_program(name = "app", model = "//models/vision:m")\n',
        "tools": 'pt2_program(name = "tool", model = "//models/vision:open")\n',
        "legacy": MODEL.format(name="old", extra="") + 'pt2_program(name = "old_pt2", model = "//legacy:old")\n',
    })
    proc = query(ws, "//...")
    assert proc.returncode == 0, proc.stderr  # apps/ beneath //apps/..., open is public, private in its package
    assert "//apps/camera:app" in proc.stdout and "//tools:tool" in proc.stdout and "//models/vision:local" in proc.stdout


def test_a_dependency_the_target_does_not_allow_is_refused_at_load(tmp_path: Path):
    ws = workspace(tmp_path, {
        "models/vision": VISION,
        "other": 'pt2_program(name = "fine", model = "//models/vision:open")\n'
                 'pt2_program(name = "nope", model = "//models/vision:m")\n',
    })
    proc = query(ws, "//other:nope")
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    assert proc.stderr.strip() == (
        "ERROR: other/BUILD.models:2: '//other:nope' depends on '//models/vision:m', which is not visible to it: "
        "'//models/vision:m' (declared at models/vision/BUILD.models:3) has visibility = [\"//apps/...\"]. To allow "
        "it, add \"//other:__pkg__\" to that visibility (or the package's default_visibility)"), proc.stderr
    assert query(ws, "//other:fine").returncode == 0
    (ws / "other" / "BUILD.models").write_text('pt2_program(name = "nope", model = "//models/vision:mine")\n')
    proc = query(ws, "//other:nope")
    assert proc.returncode == 2 and 'has visibility = ["//visibility:private"]' in proc.stderr, proc.stderr


def test_bad_visibility_and_a_late_package_call_are_refused_where_they_are(tmp_path: Path):
    ws = workspace(tmp_path, {"": MODEL.format(name="m", extra=', visibility = ["//apps"]')})
    proc = query(ws, "//...")
    assert proc.returncode == 2 and proc.stderr.startswith("ERROR: BUILD.models:1: model() field 'visibility': "
                                                           "visibility entry '//apps' is not one of "), proc.stderr
    (ws / "BUILD.models").write_text(MODEL.format(name="m", extra="") + 'package(default_visibility = ["//visibility:private"])\n')
    proc = query(ws, "//...")
    assert proc.returncode == 2 and "BUILD.models:2: package() must come once, before the first target" in proc.stderr

"""Confinement: what a declaration may reach (links inside the package and the workspace still
work; the refusals are rows of tests/bad_inputs/corpus.py), and what counts as the user's code in
a model's error when the virtualenv and modelbuild's own code sit inside the workspace."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from helpers import REPO, run_cli

WORKSPACE = Path(__file__).parents[1] / "bad_inputs" / "workspace"


def workspace(tmp_path: Path, build: str) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(WORKSPACE, ws, ignore=shutil.ignore_patterns("__pycache__"))
    (ws / "BUILD.models").write_text(build)
    return ws


def action_ids(ws: Path) -> list[str]:
    proc = run_cli(ws, "query", "--actions", "//...")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [line.split()[1] for line in proc.stdout.splitlines() if line.strip()]


def test_links_inside_the_package_and_the_workspace_are_followed_and_hashed(tmp_path: Path):
    ws = workspace(tmp_path, 'load("//:defs.star", "declare")\ndeclare()\n')
    (ws / "lib").mkdir()
    (ws / "lib" / "defs.star").write_text(
        'def declare():\n'
        '    model(name = "m", entry = "models.sincos:SinCos", inputs = {"x": tensor([4]), "y": tensor([4])},\n'
        '          data = ["d.bin"])\n'
        '    pt2_program(name = "p", model = ":m")\n'
    )
    (ws / "defs.star").symlink_to("lib/defs.star")  # a loaded file linked within the workspace
    (ws / "blobs").mkdir()
    (ws / "blobs" / "d.bin").write_bytes(b"one")
    (ws / "d.bin").symlink_to("blobs/d.bin")  # a data file linked within its package
    (ws / "src").mkdir()
    (ws / "models").rename(ws / "src" / "models")
    (ws / "models").symlink_to("src/models")  # a linked directory that is no package: Python imports through it
    (ws / "sub").mkdir()
    (ws / "shared.models").write_text('pt2_program(name = "q", model = "//:m")\n')
    (ws / "sub" / "BUILD.models").symlink_to("../shared.models")  # a BUILD.models linked within the workspace

    before = action_ids(ws)
    (ws / "blobs" / "d.bin").write_bytes(b"two")
    assert action_ids(ws) != before  # what the link points at is what is hashed


def test_print_in_a_build_file_still_shows(tmp_path: Path):
    ws = workspace(tmp_path, 'print("hello from BUILD.models")\n')
    proc = run_cli(ws, "query", "//...")
    assert "hello from BUILD.models" in proc.stderr


def test_a_model_error_shows_only_the_users_frames_with_the_venv_and_modelbuild_in_the_workspace(tmp_path: Path):
    """The README's quick start: the workspace is a checkout holding .venv, rules/ and buildsys/.
    Python names frames by the path it imported from (links unresolved), so through ws/.venv
    torch's frames, and rules/' frames, are all under the workspace."""
    ws = workspace(tmp_path, 'model(name = "m", entry = "models.broken:Broken", inputs = {"x": tensor([4, 4])})\n'
                             'pt2_program(name = "p", model = ":m", verify = False)\n')
    for package in ("buildsys", "rules"):  # imported from the workspace: the CLI runs from it
        shutil.copytree(REPO / package, ws / package, ignore=shutil.ignore_patterns("__pycache__"))
    (ws / ".venv").symlink_to(REPO / ".venv")
    python = ws / ".venv" / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "MODELBUILD_CACHE_DIR"} | {"COLUMNS": "200"}
    proc = subprocess.run([str(python), "-m", "modelbuild", "build", "//...", "-j", "1"], cwd=ws,
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # The toolchain really ran from inside the workspace: its log names torch under ws/.venv.
    log = Path(proc.stdout.split("full log:")[1].split()[0])
    assert f"{ws}/.venv/lib/" in log.read_text()
    shown = proc.stdout.split("full log:")[0]
    assert re.findall(r'File "([^"]+)", line (\d+)', shown) == [("models/broken.py", "8")], shown
    assert "site-packages" not in shown and "rules/" not in shown and "Traceback" not in shown

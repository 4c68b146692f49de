"""The example workspace (the repository's own BUILD.models and models/), copied for a test or a benchmark."""
from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_FILES = ["WORKSPACE.models", "BUILD.models", "defs.star", "models"]


def copy_example(dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in EXAMPLE_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst / name)
    return dst

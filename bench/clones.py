"""Fresh clones of this repository at its current commit, as a user's machines would have them."""
from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def head() -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def clones(root: Path, names: tuple[str, ...], commit: str) -> list[Path]:
    trees = []
    for name in names:
        tree = root / name
        subprocess.run(["git", "clone", "-q", str(REPO), str(tree)], check=True)
        subprocess.run(["git", "-C", str(tree), "checkout", "-q", commit], check=True)  # one commit for all
        trees.append(tree)
    return trees

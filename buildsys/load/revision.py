"""The workspace's version-control state, for a release's provenance: which commit, and
whether the working tree differs from it (only the workspace's own directory counts)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def workspace_revision(root: Path) -> dict:
    if shutil.which("git") is None or _git(root, "rev-parse", "--is-inside-work-tree") is None:
        return {"vcs": None}
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:  # a repository without commits yet
        return {"vcs": "git", "commit": None, "dirty": True}
    status = _git(root, "status", "--porcelain", "--untracked-files=normal", "--", ".")
    return {"vcs": "git", "commit": commit.strip(), "dirty": status is None or bool(status.strip())}

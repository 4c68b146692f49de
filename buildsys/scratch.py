"""Temporary files and directories named after the process that owns them, so that what a
killed build left behind can be told from what a running build is using, and removed."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

_NAME = re.compile(r"^\.tmp-(\d+)-")


def prefix(label: str = "") -> str:
    return f".tmp-{os.getpid()}-{label}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(directory: Path) -> int:
    """Remove the scratch entries of processes that no longer run; returns how many."""
    removed = 0
    if not directory.is_dir():
        return 0
    for entry in directory.iterdir():
        match = _NAME.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            removed += 1
    return removed

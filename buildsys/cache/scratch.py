"""Temporary files and directories named after the process that owns them, so that what a
killed build left behind can be told from what a running build is using, and removed; and lock
files no build holds any more."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

_NAME = re.compile(r"^\.tmp-(\d+)-")
DAY_NS = 86_400 * 10**9


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


def remove_idle_locks(lock_dir: Path, cutoff: int) -> int:
    """Remove the lock files (per action, or per out/ directory) no build holds and none touched since
    `cutoff`. A build that opened one just before it went notices the unlinked file (filelock checks)
    and takes a new one."""
    import fcntl

    removed = 0
    for path in lock_dir.glob("*.lock") if lock_dir.is_dir() else ():
        try:
            if path.stat().st_mtime_ns >= cutoff:
                continue
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: a build is running that action
            path.unlink()
            removed += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed

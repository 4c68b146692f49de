"""`modelbuild cache gc` and `cache stats`: bound the CAS, least recently used first.

Removing a blob is always safe for correctness: an action-cache record whose outputs are not all
in the CAS is a miss (the scheduler checks), so the action runs again. What gc must not do is make
work for nobody's benefit, or pull a blob from under a build that is running:
- it keeps what out/ holds now (those blobs would be rebuilt at once by the next build);
- it keeps every blob used since the oldest running build opened the store, and since gc itself
  started: a build marks each blob it uses (its mtime) and holds a session lock while it runs
  (buildsys/cas.py), so a blob a running build has looked up stays. A blob it has not looked up
  yet may go, and is then a miss like any other. Between the check and the unlink a blob's mtime
  is read again, which narrows the race to a build that marks it within that instant; such a
  build finds the blob missing when it reads it and reruns its producer.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from .cas import CAS
from .scratch import DAY_NS, remove_idle_locks
from .layout import Layout

# File times come from a coarse clock that can trail time.time_ns() by a tick: a blob marked just
# after a build opened the store may carry a slightly earlier time.
CLOCK_SLACK_NS = 10**9


@dataclass
class GcResult:
    removed: int = 0
    removed_bytes: int = 0
    kept: int = 0
    kept_bytes: int = 0
    held: int = 0  # kept because out/ holds them
    held_bytes: int = 0
    in_use: int = 0  # kept because a running build (or one that ran since gc started) used them
    in_use_bytes: int = 0
    builds_running: int = 0
    locks_removed: int = 0  # idle per-action lock files (cache/locks)
    stamps_removed: int = 0  # no-op stamps (cache/stamps) no command has used for the age limit, or a week


def collect(layout: Layout, cas: CAS, held: set[str], max_size: int | None = None,
            older_than_days: float | None = None) -> GcResult:
    """Remove blobs unused for older_than_days, then the least recently used until the CAS is at most
    max_size bytes; never a blob in `held` or one used since a running build (or this gc) started."""
    now = time.time_ns()
    others = cas.others_started()
    cutoff = min([now, *others]) - CLOCK_SLACK_NS
    result = GcResult(builds_running=len(others))
    candidates: list[tuple[int, int, str]] = []  # (last used, size, digest)
    total = 0
    for digest, st in cas.blobs():
        total += st.st_size
        if digest in held:
            result.held += 1
            result.held_bytes += st.st_size
        elif st.st_mtime_ns >= cutoff:
            result.in_use += 1
            result.in_use_bytes += st.st_size
        else:
            candidates.append((st.st_mtime_ns, st.st_size, digest))
    candidates.sort()
    too_old = now - older_than_days * DAY_NS if older_than_days is not None else None
    for used, size, digest in candidates:
        if not ((too_old is not None and used < too_old) or (max_size is not None and total > max_size)):
            continue  # candidates are oldest first, but an age limit and a size limit each may still apply
        if _still_unused(cas, digest, cutoff):
            cas.remove(digest)
            total -= size
            result.removed += 1
            result.removed_bytes += size
    result.kept_bytes = total
    result.kept = sum(1 for _ in cas.blobs())
    result.locks_removed = remove_idle_locks(layout.locks, cutoff)
    result.stamps_removed = _remove_stamps(layout.stamps, too_old if too_old is not None else now - _STAMP_DAYS * DAY_NS)
    return result


_STAMP_DAYS = 7


def _remove_stamps(stamps: Path, before: int) -> int:
    """Stamps of commands not run since `before` (a fast no-op touches its stamp): one per command line
    and directory, they pile up in CI. A removed one costs its command one full-path run."""
    removed = 0
    for path in stamps.iterdir() if stamps.is_dir() else ():
        try:
            if path.stat().st_mtime_ns < before:
                path.unlink()
                removed += 1
        except OSError:  # gone already
            pass
    return removed


def _still_unused(cas: CAS, digest: str, cutoff: int) -> bool:
    try:
        return os.stat(cas.path(digest)).st_mtime_ns < cutoff
    except FileNotFoundError:
        return False


@dataclass
class CacheStats:
    blobs: int
    blob_bytes: int
    oldest_use_ns: int | None
    newest_use_ns: int | None
    held: int  # blobs out/ holds
    held_bytes: int
    builds_running: int
    parts: dict[str, int]  # the cache directory's other parts: name -> bytes on disk


def stats(cache_dir: Path, cas: CAS, held: set[str]) -> CacheStats:
    blobs = list(cas.blobs())
    uses = [st.st_mtime_ns for _, st in blobs]
    held_sizes = [st.st_size for d, st in blobs if d in held]
    parts = {child.name: _tree_bytes(child) for child in sorted(cache_dir.iterdir())
             if child.is_dir() and child != cas.root}
    return CacheStats(len(blobs), sum(st.st_size for _, st in blobs), min(uses, default=None),
                      max(uses, default=None), len(held_sizes), sum(held_sizes), len(cas.others_started()), parts)


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            try:
                total += os.stat(os.path.join(dirpath, name), follow_symlinks=False).st_size
            except FileNotFoundError:
                pass
    return total

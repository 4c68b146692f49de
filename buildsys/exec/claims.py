"""Claims: one build at a time runs the action of a key, across processes sharing a cache. A claim
is a file lock the kernel drops if its process dies, so a killed build never blocks the next."""
from __future__ import annotations

from pathlib import Path

from filelock import FileLock, Timeout


class Claims:
    def __init__(self, lock_dir: Path):
        self.lock_dir = lock_dir
        self._locks: dict[str, FileLock] = {}  # action id -> the lock of its key, held

    def claim(self, aid: str, key: str) -> bool:
        """Hold the key's lock for this action; False if another process holds it."""
        if aid in self._locks:
            return True
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.lock_dir / f"{key}.lock", blocking=False)
        try:
            lock.acquire()
        except Timeout:
            return False
        self._locks[aid] = lock
        return True

    def release(self, aid: str) -> None:
        lock = self._locks.pop(aid, None)
        if lock is not None:
            lock.release()

    def release_all(self) -> None:
        for aid in list(self._locks):
            self.release(aid)

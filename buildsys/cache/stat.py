"""The stat cache: a file's digest, remembered by (path, inode, size, mtime_ns, ctime_ns), as git's
index and DVC's state do. An unchanged file is never read twice, however large; a touched file is
read once. Entries are JSON; one that cannot be read or does not validate is a miss (one warning),
and the file is hashed again.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from ..digests import digest_file
from .plain_store import UNREADABLE, open_store

# A file modified this recently may change again within the same mtime tick (git's "racy" case):
# hash it, but do not remember the digest.
_RACY_SECONDS = 2.0
_DIGEST = re.compile(r"[0-9a-f]{64}")


def _entry(raw) -> tuple[list[int], str] | None:
    """[[inode, size, mtime_ns, ctime_ns], digest] as stored, or None if it is not that."""
    try:
        stamp, digest = json.loads(raw)
    except (TypeError, ValueError):
        return None
    if (isinstance(stamp, list) and len(stamp) == 4 and all(type(n) is int for n in stamp)
            and isinstance(digest, str) and _DIGEST.fullmatch(digest)):
        return stamp, digest
    return None


class FileDigests:
    def __init__(self, directory: Path):
        self._store_warnings: list[str] = []  # the store moved aside
        self._db = open_store(directory, "stat cache", self._store_warnings)
        self._dropped: list[str] = []  # paths whose entry could not be used, and why
        self.hashed = 0  # files actually read (tests check the stat cache with it)
        self.seen: dict[str, list[int]] = {}  # every file digested, by the stat it was digested at (cli/noop.py)

    @property
    def warnings(self) -> list[str]:
        """For the build's summary: one line however many entries were dropped."""
        if not self._dropped:
            return list(self._store_warnings)
        return self._store_warnings + [f"the stat cache had an entry it could not use ({self._dropped[0]}); such "
                                       "entries count as misses, and their files are hashed again"]

    def _get(self, key: str) -> tuple[list[int], str] | None:
        try:
            raw = self._db.get(key)
        except UNREADABLE as err:
            raw, why = None, f"unreadable ({type(err).__name__})"
        else:
            if raw is None:
                return None
            entry = _entry(raw)
            if entry is not None:
                return entry
            why = "malformed"
        self._dropped.append(f"{why}, for {key}")
        try:
            self._db.delete(key)
        except UNREADABLE:
            pass
        return None

    def digest(self, path: Path) -> str:
        path = path.resolve()
        st = os.stat(path)
        stamp = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        self.seen[str(path)] = stamp
        hit = self._get(str(path))
        if hit is not None and hit[0] == stamp:
            return hit[1]
        value = digest_file(path)
        self.hashed += 1
        if time.time() - st.st_mtime_ns / 1e9 > _RACY_SECONDS:
            self._db.set(str(path), json.dumps([stamp, value]))
        return value

    def close(self) -> None:
        self._db.close()

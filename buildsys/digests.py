"""SHA-256 digests: of canonical JSON, of bytes and files, and a stat cache for file digests."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import diskcache

_CHUNK = 1 << 20
# A file modified this recently may change again within the same mtime tick (git's "racy" case):
# hash it, but do not remember the digest.
_RACY_SECONDS = 2.0


def canonical_json(value: object) -> str:
    """Sorted keys, no whitespace: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def digest_json(value: object) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class FileDigests:
    """Digests of workspace files, remembered by (path, inode, size, mtime_ns, ctime_ns).

    An unchanged file is never read twice, however large; a touched file is re-read once.
    """

    def __init__(self, cache_dir: Path):
        self._db = diskcache.Cache(str(cache_dir / "stat"))
        self.hashed = 0  # files actually read (tests check the stat cache with it)

    def digest(self, path: Path) -> str:
        path = path.resolve()
        st = os.stat(path)
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        hit = self._db.get(str(path))
        if hit is not None and tuple(hit[0]) == stamp:
            return hit[1]
        value = digest_file(path)
        self.hashed += 1
        if time.time() - st.st_mtime_ns / 1e9 > _RACY_SECONDS:
            self._db.set(str(path), (stamp, value))
        return value

    def close(self) -> None:
        self._db.close()

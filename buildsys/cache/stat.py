"""Caches keyed by a file's stat, (path, inode, size, mtime_ns, ctime_ns), as git's index and DVC's
state are: a file's digest (the stat cache), and the modules a Python file imports (the import scan).
An unchanged file is never read twice, however large; a touched file is read once. Entries are JSON;
one that cannot be read or does not validate is a miss (one warning), and the file is read again.
"""
from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from ..digests import digest_code, digest_file
from .plain_store import UNREADABLE, open_store

# A file modified this recently may change again within the same mtime tick (git's "racy" case):
# read it, but do not remember what was read.
_RACY_SECONDS = 2.0
_DIGEST = re.compile(r"[0-9a-f]{64}")


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class _ByStat:
    """A plain-data store of [stamp, value] per key; `valid` says whether a stored value has the right shape."""

    what = "stat cache"

    def __init__(self, directory: Path):
        self._store_warnings: list[str] = []  # the store moved aside
        self._db = open_store(directory, self.what, self._store_warnings)
        self._dropped: list[str] = []  # keys whose entry could not be used, and why

    @staticmethod
    def valid(value) -> bool:
        raise NotImplementedError

    @property
    def warnings(self) -> list[str]:
        """For the build's summary: one line however many entries were dropped."""
        if not self._dropped:
            return list(self._store_warnings)
        return self._store_warnings + [f"the {self.what} had an entry it could not use ({self._dropped[0]}); such "
                                       "entries count as misses, and their files are read again"]

    def _get(self, key: str, stamp: list[int]):
        """The value stored for key at this stamp, or None."""
        try:
            raw = self._db.get(key)
        except UNREADABLE as err:
            raw, why = None, f"unreadable ({type(err).__name__})"
        else:
            if raw is None:
                return None
            try:
                stored, value = json.loads(raw)
                if not (isinstance(stored, list) and len(stored) == 4 and all(type(n) is int for n in stored)
                        and self.valid(value)):
                    raise ValueError
            except (TypeError, ValueError):
                why = "malformed"
            else:
                return value if stored == stamp else None
        self._dropped.append(f"{why}, for {key}")
        try:
            self._db.delete(key)
        except UNREADABLE:
            pass
        return None

    def _put(self, key: str, stamp: list[int], value) -> None:
        if time.time() - stamp[2] / 1e9 > _RACY_SECONDS:
            self._db.set(key, json.dumps([stamp, value]))

    def close(self) -> None:
        self._db.close()


class FileDigests(_ByStat):
    def __init__(self, directory: Path):
        super().__init__(directory)
        self.hashed = 0  # files actually read (tests check the stat cache with it)
        self.seen: dict[str, list[int]] = {}  # every file digested, by the stat it was digested at (cli/noop.py)
        self._real: dict[Path, Path] = {}
        self._digests: dict[str, str] = {}  # this build's, for the stat in `seen`

    def _resolved(self, path: Path) -> Path:
        """path.resolve(), with each directory resolved once per build: a shared module is digested for
        every model that imports it, and a package's files share their directory."""
        if path not in self._real:
            real = self._resolved(path.parent) / path.name if path.parent != path else path.resolve()
            self._real[path] = real.resolve() if path.name in ("..", ".", "") or real.is_symlink() else real
        return self._real[path]

    @staticmethod
    def valid(value) -> bool:
        return isinstance(value, str) and _DIGEST.fullmatch(value) is not None

    def digest(self, path: Path) -> str:
        path = self._resolved(path)
        stamp = _stamp(os.stat(path))
        if self.seen.get(str(path)) == stamp and str(path) in self._digests:  # again in this build
            return self._digests[str(path)]
        self.seen[str(path)] = stamp
        self._digests.pop(f"{path}#code", None)  # of the file as it was
        value = self._get(str(path), stamp)
        if value is None:
            value = digest_file(path)
            self.hashed += 1
            self._put(str(path), stamp, value)
        self._digests[str(path)] = value
        return value

    def code_digest(self, path: Path) -> str:
        """A Python file's code digest (digests.digest_code: comments and blank lines do not count),
        remembered beside its content digest; the content digest where the file does not tokenize."""
        content = self.digest(path)
        path = self._resolved(path)
        key, stamp = f"{path}#code", self.seen[str(path)]
        if key not in self._digests:
            value = self._get(key, stamp)
            if value is None:
                value = digest_code(path) or content
                self._put(key, stamp, value)
            self._digests[key] = value
        return self._digests[key]


class ImportScan(_ByStat):
    """The first-party imports of a Python file (load/pysources.py), parsed once per version of the
    file rather than on every build: rule code and shared model modules are the same build after build."""

    what = "import scan cache"

    @staticmethod
    def valid(value) -> bool:
        return isinstance(value, list) and all(isinstance(name, str) for name in value)

    def names(self, path: Path, module: str, parse: Callable[[Path, str], frozenset[str]]) -> frozenset[str]:
        stamp = _stamp(os.stat(path))
        key = f"{path.resolve()}:{module}"
        value = self._get(key, stamp)
        if value is None:
            value = sorted(parse(path, module))
            self._put(key, stamp, value)
        return frozenset(value)

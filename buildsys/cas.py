"""Content-addressed storage: blobs by SHA-256, directories as canonical trees of blobs.

A blob is written to a temporary file in the store and renamed into place, so a reader never
sees half a blob. Blobs are read-only; every read that hands bytes onward verifies the digest,
and a blob that fails is removed, which turns it into a cache miss rather than a wrong result.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable

from . import scratch
from .digests import canonical_json, digest_bytes, digest_file


class CorruptBlob(Exception):
    pass


class CAS:
    def __init__(self, root: Path):
        self.root = root / "cas"
        self.root.mkdir(parents=True, exist_ok=True)
        scratch.sweep(self.root)  # half-written blobs of a build that was killed

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def _install(self, tmp: Path, digest: str) -> None:
        dest = self.path(digest)
        if dest.exists():
            tmp.unlink()
            return
        dest.parent.mkdir(exist_ok=True)
        os.chmod(tmp, 0o444)
        os.replace(tmp, dest)

    def _tmp(self) -> Path:
        fd, name = tempfile.mkstemp(dir=self.root, prefix=scratch.prefix())
        os.close(fd)
        return Path(name)

    def put_bytes(self, data: bytes) -> str:
        digest = digest_bytes(data)
        if not self.has(digest):
            tmp = self._tmp()
            tmp.write_bytes(data)
            self._install(tmp, digest)
        return digest

    def put_file(self, src: Path) -> str:
        tmp = self._tmp()
        shutil.copyfile(src, tmp)
        digest = digest_file(tmp)  # hash the copy: what is stored is what was hashed
        self._install(tmp, digest)
        return digest

    @staticmethod
    def _manifest(src: Path, file_digest: Callable[[Path], str]) -> bytes:
        """A directory as canonical JSON: sorted (path, digest, executable) files, and its
        sub-directories, since an empty one can matter (an .mlpackage without weights)."""
        entries, dirs = [], []
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src).as_posix()
            if path.is_dir():
                dirs.append(rel)
            elif path.is_file():
                executable = bool(path.stat().st_mode & stat.S_IXUSR)
                entries.append([rel, file_digest(path), executable])
        return canonical_json({"tree": entries, "dirs": dirs}).encode()

    def put_tree(self, src: Path) -> str:
        """Store a directory: each file as a blob, then its manifest, whose digest names the tree."""
        return self.put_bytes(self._manifest(src, self.put_file))

    @classmethod
    def tree_digest(cls, src: Path, file_digest: Callable[[Path], str]) -> str:
        """The digest put_tree would give, without storing anything."""
        return digest_bytes(cls._manifest(src, file_digest))

    def read(self, digest: str) -> bytes:
        data = self.path(digest).read_bytes()
        if digest_bytes(data) != digest:
            self.path(digest).unlink(missing_ok=True)
            raise CorruptBlob(digest)
        return data

    def verify(self, digest: str) -> bool:
        path = self.path(digest)
        if not path.is_file():
            return False
        if digest_file(path) != digest:
            path.unlink(missing_ok=True)
            return False
        return True

    def tree_entries(self, digest: str) -> tuple[list[tuple[str, str, bool]], list[str]]:
        manifest = json.loads(self.read(digest))
        return [tuple(e) for e in manifest["tree"]], manifest["dirs"]

    def _link(self, digest: str, dest: Path, executable: bool = False) -> None:
        """Hard-link (or copy) a verified blob to dest."""
        if not self.verify(digest):
            raise CorruptBlob(digest)
        try:
            os.link(self.path(digest), dest)
        except OSError:
            shutil.copyfile(self.path(digest), dest)
            os.chmod(dest, 0o555 if executable else 0o444)

    def materialize(self, digest: str, is_tree: bool, dest: Path) -> None:
        """Atomically place the blob or tree at dest, replacing what was there."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=scratch.prefix(dest.name + "-")))
        try:
            built = staging / dest.name
            if is_tree:
                built.mkdir()
                files, dirs = self.tree_entries(digest)
                for rel in dirs:
                    (built / rel).mkdir(parents=True, exist_ok=True)
                for rel, blob, executable in files:
                    (built / rel).parent.mkdir(parents=True, exist_ok=True)
                    self._link(blob, built / rel, executable)
            else:
                self._link(digest, built)
            if dest.is_dir() and not dest.is_symlink():
                # A directory cannot be replaced atomically: move the old one aside first.
                old = staging / "old"
                os.replace(dest, old)
            os.replace(built, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

"""Content-addressed storage: blobs by SHA-256, directories as canonical trees of blobs.

A blob is written to a temporary file in the store and renamed into place, so a reader never
sees half a blob. Blobs are read-only; every read that hands bytes onward verifies the digest,
and a blob that fails is removed, which turns it into a cache miss rather than a wrong result.
A blob is never handed out as a hard link: what leaves the store is a copy (or a reflink), so
editing it cannot change the store.

Every use of a blob sets its mtime (as Bazel's disk cache does), so `cache gc` can remove the
least recently used first; every process that opens the store registers a session, so gc
leaves alone what a running build has used since it started (see buildsys/cache/gc.py).
"""
from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..digests import digest_bytes, digest_file
from . import scratch, tree


class CorruptBlob(Exception):
    pass


_FICLONE = 0x40049409  # linux/fs.h: share the source's extents (btrfs, XFS, bcachefs)


def clone_or_copy(src: Path, dest: Path) -> None:
    """dest as a new file with src's bytes: a reflink where the file system has them, else a copy."""
    if sys.platform.startswith("linux"):
        with open(src, "rb") as s, open(dest, "wb") as d:
            try:
                fcntl.ioctl(d.fileno(), _FICLONE, s.fileno())
                return
            except OSError:  # not supported here (ext4, tmpfs, across devices): copy
                pass
    shutil.copyfile(src, dest)  # in-kernel (sendfile) on Linux


class Session:
    """A process's registration with the store: a file named after when it opened the store, locked
    for as long as the process has it open (the lock goes when the process dies, however it dies)."""

    def __init__(self, path: Path, fd: int, started_ns: int):
        self.path, self._fd, self.started_ns = path, fd, started_ns

    @classmethod
    def open(cls, directory: Path) -> "Session":
        directory.mkdir(exist_ok=True)
        scratch.sweep(directory)
        cls.live(directory)  # and the files of killed processes go, whether or not gc ever runs
        started = time.time_ns()
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=scratch.prefix())
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.fchmod(fd, 0o644)  # another user's gc must be able to open it to test the lock
        path = directory / f"{started}-{os.getpid()}"
        os.replace(tmp, path)  # locked before it has its name: gc never sees it unlocked while alive
        return cls(path, fd, started)

    def close(self) -> None:
        if self._fd >= 0:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = -1

    @staticmethod
    def live(directory: Path, own: "Session | None" = None) -> list[int]:
        """When each other process that has the store open opened it; the files of dead ones are removed."""
        started = []
        for entry in directory.iterdir() if directory.is_dir() else []:
            opened = entry.name.split("-")[0]
            if not opened.isdigit() or (own is not None and entry == own.path):
                continue
            try:
                fd = os.open(entry, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                started.append(int(opened))
            else:
                entry.unlink(missing_ok=True)  # its process is gone
            finally:
                os.close(fd)
        return started


class CAS:
    SESSIONS = ".sessions"

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        scratch.sweep(self.root)  # half-written blobs of a build that was killed
        self._used: set[str] = set()
        self.session = Session.open(self.root / self.SESSIONS)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:]

    def _use(self, digest: str) -> bool:
        """Whether the blob is there; marks it used (its mtime), once per process."""
        path = self.path(digest)
        if digest in self._used:
            return path.is_file()
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        except OSError:  # a read-only store still serves; gc just cannot tell its age
            return path.is_file()
        self._used.add(digest)
        return True

    def has(self, digest: str) -> bool:
        return self._use(digest)

    def close(self) -> None:
        self.session.close()

    # For gc: the blobs, and the sessions of the processes that have the store open.
    def blobs(self) -> Iterator[tuple[str, os.stat_result]]:
        """Every blob, with its stat (st_mtime_ns: when it was last used)."""
        for shard in os.scandir(self.root):
            if len(shard.name) != 2 or not shard.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(shard.path):
                try:
                    yield shard.name + entry.name, entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue

    def remove(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def others_started(self) -> list[int]:
        """When each other process that has the store open now opened it (time.time_ns())."""
        return Session.live(self.root / self.SESSIONS, self.session)

    def _install(self, tmp: Path, digest: str) -> None:
        dest = self.path(digest)
        if self._use(digest):
            return  # already stored: the staged copy goes
        dest.parent.mkdir(exist_ok=True)
        os.chmod(tmp, 0o444)
        os.replace(tmp, dest)

    @contextmanager
    def _staged(self) -> Iterator[Path]:
        """A temporary file in the store, gone afterwards unless installed (a full disk leaves nothing)."""
        fd, name = tempfile.mkstemp(dir=self.root, prefix=scratch.prefix())
        os.close(fd)
        try:
            yield Path(name)
        finally:
            Path(name).unlink(missing_ok=True)

    def put_bytes(self, data: bytes) -> str:
        digest = digest_bytes(data)
        if not self.has(digest):
            with self._staged() as tmp:
                tmp.write_bytes(data)
                self._install(tmp, digest)
        return digest

    def put_file(self, src: Path) -> str:
        with self._staged() as tmp:
            shutil.copyfile(src, tmp)
            digest = digest_file(tmp)  # hash the copy: what is stored is what was hashed
            self._install(tmp, digest)
        return digest

    def adopt(self, chunks: Iterable[bytes], digest: str) -> bool:
        """Store bytes received from elsewhere (a remote cache) only if they hash to digest;
        False, and nothing stored, if they do not."""
        with self._staged() as tmp:
            with open(tmp, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
            if digest_file(tmp) != digest:  # hash what was written: what is stored is what was hashed
                return False
            self._install(tmp, digest)
        return True

    @staticmethod
    def _manifest(src: Path, file_digest: Callable[[Path], str]) -> bytes:
        return tree.manifest(*tree.walk(src, file_digest))

    def put_tree(self, src: Path) -> str:
        """Store a directory: each file as a blob, then its manifest, whose digest names the tree."""
        return self.put_bytes(self._manifest(src, self.put_file))

    @classmethod
    def tree_digest(cls, src: Path, file_digest: Callable[[Path], str]) -> str:
        """The digest put_tree would give, without storing anything."""
        return digest_bytes(cls._manifest(src, file_digest))

    def read(self, digest: str) -> bytes:
        self._use(digest)
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise CorruptBlob(digest) from None
        if digest_bytes(data) != digest:
            self.path(digest).unlink(missing_ok=True)
            raise CorruptBlob(digest)
        return data

    def verify(self, digest: str) -> bool:
        path = self.path(digest)
        if not self._use(digest):
            return False
        if digest_file(path) != digest:
            path.unlink(missing_ok=True)
            return False
        return True

    def tree_entries(self, digest: str) -> tuple[list[tuple[str, str, bool]], list[str]]:
        return tree.read_manifest(self.read(digest))

    def _copy_out(self, digest: str, dest: Path, executable: bool = False) -> None:
        """A copy of the blob at dest, verified: the copy is hashed, so what is placed is what was checked."""
        self._use(digest)
        try:
            clone_or_copy(self.path(digest), dest)
        except FileNotFoundError:  # gone (gc, or removed as corrupt): a miss, like a corrupt blob
            dest.unlink(missing_ok=True)
            raise CorruptBlob(digest) from None
        if digest_file(dest) != digest:
            self.path(digest).unlink(missing_ok=True)
            raise CorruptBlob(digest)
        os.chmod(dest, 0o555 if executable else 0o444)  # read-only, as the store's own blobs

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
                    self._copy_out(blob, built / rel, executable)
            else:
                self._copy_out(digest, built)
            if dest.is_dir() and not dest.is_symlink():
                # A directory cannot be replaced atomically: move the old one aside first.
                old = staging / "old"
                os.replace(dest, old)
            os.replace(built, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

"""Files and directories between the engine and Ray actors (exec/ray.py), streamed: neither side
ever holds a whole file in memory, so a 2 GB weights file costs each a chunk, not 2 GB.

A file travels through the remote cache's CAS when the build has one that takes uploads (read
from the file as it goes up, written to the file as it comes down, checked against its sha256),
else through Ray's object store in chunks, each an object of its own, put and fetched one at a
time. A directory travels as its files. Handles, which hold object refs but never bytes:

    ("cas", sha256, executable)                      a file in the remote CAS
    ("chunks", sha256, [object refs], executable)    a file in the object store
    ("tree", [(relative path, file handle)], [relative directories])
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from ..cache import tree
from ..cache.remote import RemoteCache

CHUNK = 16 << 20  # bytes per object-store chunk: what a process holds of a file at once
Handle = tuple


class NotShared(Exception):
    """The remote cache could not take or give a blob (down, read-only, or the bytes were wrong)."""


class Changed(Exception):
    """A file's bytes are not those its sender named (it changed while being sent)."""


class Transport:
    def __init__(self, ray, remote: RemoteCache | None):
        self.ray, self.remote = ray, remote

    def send(self, path: Path) -> Handle:
        if path.is_dir():
            files, dirs = tree.walk(path, lambda p: p)
            return ("tree", [(rel, self._send_file(p, executable)) for rel, p, executable in files], dirs)
        return self._send_file(path, os.access(path, os.X_OK))

    def _send_file(self, path: Path, executable: bool) -> Handle:
        if self.remote is not None:
            digest = self.remote.put_file(path)
            if digest is not None:
                return ("cas", digest, executable)  # else (down, refusing) the object store carries it
        refs, sha = [], hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                sha.update(chunk)
                refs.append(self.ray.put(chunk))
                del chunk  # the object store has it now
        return ("chunks", sha.hexdigest(), refs, executable)

    def receive(self, handle: Handle, dest: Path) -> None:
        """Place the file or directory at dest, replacing what was there."""
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        if handle[0] != "tree":
            self._receive_file(handle, dest)
            return
        dest.mkdir(parents=True)
        for rel in handle[2]:
            (dest / rel).mkdir(parents=True, exist_ok=True)
        for rel, file_handle in handle[1]:
            self._receive_file(file_handle, dest / rel)

    def _receive_file(self, handle: Handle, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        try:
            if handle[0] == "cas":
                if self.remote is None or not self.remote.get_file(handle[1], tmp):
                    raise NotShared(f"the remote cache has no good blob cas/{handle[1][:16]}")
            else:
                sha = hashlib.sha256()
                with open(tmp, "wb") as f:
                    for ref in handle[2]:
                        chunk = self.ray.get(ref)
                        sha.update(chunk)
                        f.write(chunk)
                        del chunk
                if sha.hexdigest() != handle[1]:
                    raise Changed(f"{dest.name}: its bytes do not hash to what was sent")
            os.chmod(tmp, 0o755 if handle[-1] else 0o644)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)


def digest_of(handle: Handle) -> str | None:
    """The sha256 a file handle names (None for a directory)."""
    return None if handle[0] == "tree" else handle[1]

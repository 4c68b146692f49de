"""Files and directories through the remote cache's CAS, for an executor whose nodes share no file
system (ray_executor.py, when a remote cache takes uploads): what one machine sends, another
receives by digest, checked against it.

A file travels as its blob, cas/<sha256>; a directory as its manifest blob (cache/tree.py, as the
CAS stores a tree) plus its files' blobs. A handle names what was sent: ("cas-file", sha256,
executable) or ("cas-tree", sha256).
"""
from __future__ import annotations

from ..cache import tree
from ..cache.remote import RemoteCache

# What exec/ray.pack() makes: ("file", bytes, executable) or ("tree", [(path, bytes, executable)], [dirs]).
Packed = tuple
Handle = tuple


class NotShared(Exception):
    """The remote cache could not take or give a blob (down, read-only, or the bytes were wrong)."""


def is_handle(value) -> bool:
    return isinstance(value, tuple) and bool(value) and value[0] in ("cas-file", "cas-tree")


def _put(remote: RemoteCache, data: bytes) -> str:
    digest = remote.put_bytes(data)
    if digest is None:
        raise NotShared(f"the remote cache {remote.url} did not take a blob")
    return digest


def _get(remote: RemoteCache, digest: str) -> bytes:
    data = remote.get_bytes(digest)
    if data is None:
        raise NotShared(f"the remote cache {remote.url} has no good blob cas/{digest[:16]}")
    return data


def send(remote: RemoteCache, packed: Packed) -> Handle:
    if packed[0] == "file":
        return ("cas-file", _put(remote, packed[1]), packed[2])
    files = [(path, _put(remote, data), executable) for path, data, executable in packed[1]]
    return ("cas-tree", _put(remote, tree.manifest(files, packed[2])))


def receive(remote: RemoteCache, handle: Handle) -> Packed:
    if handle[0] == "cas-file":
        return ("file", _get(remote, handle[1]), handle[2])
    files, dirs = tree.read_manifest(_get(remote, handle[1]))  # checked against its digest: the sender's
    return ("tree", [(path, _get(remote, digest), executable) for path, digest, executable in files], dirs)

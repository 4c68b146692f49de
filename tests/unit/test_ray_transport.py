"""exec/ray_transport.py: files and directories move a chunk at a time, through the remote cache's
CAS (a real WebDAV server) or the object store. The object store here is a dict with Ray's put/get
(the real one is in tests/cluster/test_ray_executor.py); what is checked is the chunking, the
checks on the way in and the fall-back, not Ray."""
from __future__ import annotations

import hashlib
import os

import pytest
from dav_server import DavServer

from buildsys.cache.remote import RemoteCache
from buildsys.exec import ray_transport
from buildsys.exec.ray_transport import Changed, Transport


class ObjectStore:
    """What the transport asks of ray: put and get."""

    def __init__(self):
        self.objects: dict[int, bytes] = {}
        self.largest = 0

    def put(self, data: bytes) -> int:
        self.objects[len(self.objects)] = bytes(data)
        self.largest = max(self.largest, len(data))
        return len(self.objects) - 1

    def get(self, ref: int) -> bytes:
        return self.objects[ref]


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(ray_transport, "CHUNK", 1000)


def weights(path, size=3500):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def test_a_file_goes_through_the_object_store_a_chunk_at_a_time(tmp_path, small_chunks):
    src = weights(tmp_path / "w.bin")
    src.chmod(0o755)
    store = ObjectStore()
    transport = Transport(store, None)
    handle = transport.send(src)
    assert handle[0] == "chunks" and handle[1] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert len(handle[2]) == 4 and store.largest == 1000
    transport.receive(handle, tmp_path / "out" / "w.bin")
    assert (tmp_path / "out" / "w.bin").read_bytes() == src.read_bytes() and os.access(tmp_path / "out" / "w.bin", os.X_OK)


def test_a_directory_goes_as_its_files(tmp_path, small_chunks):
    src = tmp_path / "m.mlpackage"
    weights(src / "Data" / "weights" / "weight.bin")
    (src / "Manifest.json").write_text("{}")
    (src / "empty").mkdir()
    transport = Transport(ObjectStore(), None)
    dest = tmp_path / "out" / "m.mlpackage"
    weights(dest / "stale.bin", 10)  # what was there is replaced
    transport.receive(transport.send(src), dest)
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*"))
    assert files == ["Data", "Data/weights", "Data/weights/weight.bin", "Manifest.json", "empty"]
    assert (dest / "Data" / "weights" / "weight.bin").read_bytes() == (src / "Data" / "weights" / "weight.bin").read_bytes()


def test_bytes_changed_on_the_way_are_refused_and_leave_nothing(tmp_path, small_chunks):
    store = ObjectStore()
    transport = Transport(store, None)
    handle = transport.send(weights(tmp_path / "w.bin"))
    store.objects[handle[2][1]] = b"x" * 1000
    with pytest.raises(Changed):
        transport.receive(handle, tmp_path / "out" / "w.bin")
    assert list((tmp_path / "out").iterdir()) == []


def test_through_a_remote_cache_and_back_to_the_object_store_when_it_refuses(tmp_path, small_chunks):
    src = weights(tmp_path / "w.bin")
    with DavServer(tmp_path / "server") as server, RemoteCache(server.url) as remote:
        transport = Transport(ObjectStore(), remote)
        handle = transport.send(src)
        assert handle[:2] == ("cas", hashlib.sha256(src.read_bytes()).hexdigest())
        transport.receive(handle, tmp_path / "out" / "w.bin")
        assert (tmp_path / "out" / "w.bin").read_bytes() == src.read_bytes()
    with DavServer(tmp_path / "ro", readonly=True) as server, RemoteCache(server.url) as remote:
        assert Transport(ObjectStore(), remote).send(src)[0] == "chunks"

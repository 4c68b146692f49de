"""The example workspace built on a real local Ray cluster (a head with no CPUs and a worker node, each
its own `ray start` process with its own working directory, on 127.0.0.1), with a remote cache (a real
WebDAV server): every action runs in an actor on the worker node, inputs and outputs travel through the
remote cache's CAS, and every artifact is byte-identical to the local build of the same workspace.
(tests/cluster/test_ray_executor.py covers the object-store path, actor deaths and the -j bound.)"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from dav_server import DavServer
from helpers import build, by_status, copy_example
from ray_cluster import ray_cluster


def artifacts(ws: Path) -> dict[str, bytes]:
    return {p.relative_to(ws / "out").as_posix(): p.read_bytes() for p in (ws / "out").rglob("*") if p.is_file()}


@pytest.mark.slow
def test_the_example_built_on_ray_is_byte_identical_to_the_local_build(example, tmp_path):
    local, local_events = example
    ws = copy_example(tmp_path / "ws")
    with DavServer(tmp_path / "server") as server, ray_cluster() as address:
        proc, events = build(ws, extra=("--executor", "ray", "--ray-address", address, "-j", "2",
                                        "--remote-cache", server.url))
        shared = {p.name for p in (server.root / "cas").iterdir()}
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert by_status(events, "cached") == set()  # an empty cache: every action ran on the cluster
    assert by_status(events, "ran") == by_status(local_events, "ran")
    assert " on ray in " in proc.stdout
    ours, theirs = artifacts(ws), artifacts(local)
    assert sorted(ours) == sorted(theirs) and len(ours) >= 20
    assert [p for p in ours if ours[p] != theirs[p]] == []
    # The cache itself shares only outputs: a workspace source there was sent to the actors through it.
    assert hashlib.sha256((ws / "models" / "transformer.py").read_bytes()).hexdigest() in shared

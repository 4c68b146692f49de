"""Peak memory of sending a large file through the Ray executor and back: the engine sends it as an
input, an actor on the worker node copies it to its output, the engine writes that into place. Each
process's peak RSS is measured above its idle size (after a small action), through Ray's object store
and through a remote cache's CAS (a WebDAV server on 127.0.0.1). Goal: < 0.5 GB above idle, each.

    .venv/bin/python bench/ray_transport_memory.py [--gb 2]
"""
from __future__ import annotations

import argparse
import hashlib
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTBED = HERE.parent / "testbed"
sys.path[:0] = [str(TESTBED)]
from dav_server import DavServer  # noqa: E402
from ray_cluster import ray_cluster  # noqa: E402

from buildsys.digests import digest_file  # noqa: E402
from buildsys.exec.ray import RayExecutor  # noqa: E402
from buildsys.rule_api.wire import FileInput, StepRequest  # noqa: E402


def big_file(path: Path, size: int) -> None:
    """Bytes that differ along the file, written a chunk at a time (this process never holds it)."""
    with open(path, "wb") as f:
        for i in range(0, size, 1 << 24):
            f.write(hashlib.sha256(str(i).encode()).digest() * ((min(1 << 24, size - i)) // 32))


def copy(executor, blob: Path, out: Path) -> dict:
    out.mkdir(parents=True)
    executor.submit(StepRequest(action=out.name, step="copy", module="x", label="//:bench", config={},
                                inputs={"blob": FileInput(path=str(blob), digest=digest_file(blob))},
                                outputs=["blob"], out_dir=str(out), log=str(out / "log")))
    replies = []
    while not replies:
        replies = executor.wait(600)
    ((_, reply),) = replies
    assert reply.ok, reply.error
    assert digest_file(out / "blob") == digest_file(blob), "the copy that came back differs"
    return reply.metrics


def engine_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run(kind: str, executor, root: Path, blob: Path, small: Path) -> tuple[str, float, float, float]:
    idle_actor = copy(executor, small, root / f"{kind}-small")["maxrss"]
    idle_engine = engine_rss()
    start = time.perf_counter()
    peak_actor = copy(executor, blob, root / f"{kind}-big")["maxrss"]
    return kind, time.perf_counter() - start, (engine_rss() - idle_engine) / 2**30, (peak_actor - idle_actor) / 2**30


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=2.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mb-transport-"))
    ws = root / "ws"
    ws.mkdir()
    blob, small = root / "big.bin", root / "small.bin"
    big_file(blob, int(args.gb * 2**30))
    big_file(small, 1 << 20)
    rows = []
    with ray_cluster(worker_cpus=1, worker_env={"PYTHONPATH": str(TESTBED)}) as address:
        executor = RayExecutor(1, "ray_fake_runner", ws, address)
        try:
            rows.append(run("object store", executor, root, blob, small))
        finally:
            executor.shutdown()
        with DavServer(root / "dav") as server:
            executor = RayExecutor(1, "ray_fake_runner", ws, address, remote=(server.url, {}))
            try:
                rows.append(run("remote cache", executor, root, blob, small))
            finally:
                executor.shutdown()
    print(f"\n{args.gb:g} GB file, engine -> actor -> engine")
    print(f"{'through':<14} {'seconds':>8} {'engine +GB':>11} {'actor +GB':>10}  goal: each < 0.5 GB above idle")
    for kind, seconds, engine, actor in rows:
        verdict = "ok" if max(engine, actor) < 0.5 else "MISSED"
        print(f"{kind:<14} {seconds:>8.1f} {engine:>11.2f} {actor:>10.2f}  {verdict}")


if __name__ == "__main__":
    main()

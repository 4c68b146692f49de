"""Per-action overhead of the Ray executor against the local one, on trivial steps
(testbed/ray_fake_runner.py): a no-op, and a copy of a source file and a 1 MB input to outputs.
One executor of each with -j 1; after a warm-up action (the worker's start), N actions one after
another. Prints ms per action and the Ray/local ratio, both measured in this run.

    .venv/bin/python bench/ray_overhead.py [-n 20] [--cluster | --address HOST:PORT]

Without --cluster or --address the Ray executor starts a local Ray instance, as a build does;
--cluster starts testbed/ray_cluster.py's two nodes (actions run on the worker node).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTBED = REPO / "testbed"
sys.path.insert(0, str(TESTBED))
os.environ["PYTHONPATH"] = str(TESTBED)  # the workers (local, and a local Ray instance's) import the fake runner

from ray_cluster import ray_cluster  # noqa: E402

from buildsys.exec.local import LocalExecutor  # noqa: E402
from buildsys.exec.ray import RayExecutor  # noqa: E402
from buildsys.rule_api.wire import FileInput, SourceFile, SourcesInput, StepRequest  # noqa: E402


def requests(root: Path, ws: Path, kind: str, n: int) -> list[StepRequest]:
    source = SourceFile(path="mod.py", digest=hashlib.sha256((ws / "mod.py").read_bytes()).hexdigest())
    blob = ws / "blob.bin"
    inputs = {"src": SourcesInput(sources=[source]),
              "blob": FileInput(path=str(blob), digest=hashlib.sha256(blob.read_bytes()).hexdigest())}
    out = []
    for i in range(n):
        d = root / kind / str(i)
        d.mkdir(parents=True)
        out.append(StepRequest(
            action=f"{kind}{i}", step="sleep" if kind == "noop" else "copy", module="x", label="//:bench",
            config={"seconds": 0}, inputs={} if kind == "noop" else inputs,
            outputs=[] if kind == "noop" else ["sources.json", "blob"], out_dir=str(d), log=str(d / "log")))
    return out


def one_by_one(executor, reqs: list[StepRequest]) -> float:
    """Seconds per action, each submitted once the one before it came back."""
    start = time.perf_counter()
    for req in reqs:
        executor.submit(req)
        replies = []
        while not replies:
            replies = executor.wait(60)
        assert all(r.ok for _, r in replies), replies
    return (time.perf_counter() - start) / len(reqs)


def measure(make, root: Path, ws: Path, n: int) -> dict[str, float]:
    start = time.perf_counter()
    executor = make()
    try:
        one_by_one(executor, requests(root / "warm", ws, "noop", 1))
        result = {"start": time.perf_counter() - start}
        for kind in ("noop", "copy"):
            result[kind] = one_by_one(executor, requests(root, ws, kind, n))
    finally:
        executor.shutdown()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--cluster", action="store_true", help="a two-node Ray cluster on 127.0.0.1")
    parser.add_argument("--address", help="an existing Ray cluster")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ws = root / "ws"
        ws.mkdir()
        (ws / "mod.py").write_text("VALUE = 1\n")
        (ws / "blob.bin").write_bytes(os.urandom(1 << 20))
        local = measure(lambda: LocalExecutor(1, "ray_fake_runner", ws, root / "logs"), root / "local", ws, args.n)
        with (ray_cluster() if args.cluster else contextlib.nullcontext(args.address)) as address:
            where = f"cluster at {address}" if address else "local Ray instance"
            ray = measure(lambda: RayExecutor(1, "ray_fake_runner", ws, address), root / "ray", ws, args.n)
    print(f"{args.n} actions each, -j 1, one at a time; Ray: {where}")
    print(f"{'':24}{'local':>10}{'ray':>10}{'ray/local':>11}")
    print(f"{'start + first action, s':24}{local['start']:10.2f}{ray['start']:10.2f}{ray['start'] / local['start']:10.1f}x")
    for kind, what in (("noop", "no-op, ms/action"), ("copy", "copy 1 MB, ms/action")):
        print(f"{what:24}{local[kind] * 1e3:10.2f}{ray[kind] * 1e3:10.2f}{ray[kind] / local[kind]:10.1f}x")


if __name__ == "__main__":
    main()

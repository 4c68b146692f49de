"""The example workspace, cold, on the local executor and on a local two-node Ray cluster
(testbed/ray_cluster.py: a head with no CPUs and a worker node with 2), from two clones of this
commit with empty caches, -j 2 both. On one machine Ray cannot be faster; what it costs is the
point: the ratio, and the overhead per action ((ray - local) / actions run).

Run: .venv/bin/python bench/ray_build.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "testbed"))
from clones import clones, head  # noqa: E402  (bench/ is the script's own directory)
from ray_cluster import ray_cluster  # noqa: E402


def build(tree: Path, *flags: str) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if k != "MODELBUILD_CACHE_DIR"}
    events = tree / "events.jsonl"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "modelbuild", "build", "//...", "-j", "2", "--build-events",
                           str(events), *flags], cwd=tree, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"the build failed in {tree}:\n{proc.stdout}\n{proc.stderr}")
    ran = sum(1 for line in events.read_text().splitlines() if json.loads(line)["status"] == "ran")
    return seconds, ran


def main() -> None:
    commit = head()
    print(f"commit {commit}")
    with tempfile.TemporaryDirectory(prefix="modelbuild-ray-") as tmp:
        trees = clones(Path(tmp), ("local", "ray"), commit)
        local, n = build(trees[0])
        started = time.monotonic()
        with ray_cluster() as address:
            up = time.monotonic() - started
            ray, n_ray = build(trees[1], "--executor", "ray", "--ray-address", address)
        same = all((trees[0] / "out" / p.relative_to(trees[1] / "out")).read_bytes() == p.read_bytes()
                   for p in (trees[1] / "out").rglob("*") if p.is_file())
    print(f"local executor, cold:            {local:.1f}s, {n} actions")
    print(f"ray cluster (2 nodes), cold:     {ray:.1f}s, {n_ray} actions (cluster start {up:.1f}s, not counted)")
    print(f"ratio ray/local: {ray / local:.2f}; overhead per action: {(ray - local) / max(n, 1) * 1000:.0f} ms")
    print(f"out/ byte-identical: {same}")


if __name__ == "__main__":
    main()

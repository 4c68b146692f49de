"""The remote cache on the example workspace: machine A builds everything cold with an empty local
cache and an empty remote cache (and uploads); machine B, a fresh clone with an empty local cache,
builds against the now warm remote. Both are clones of this commit; the server is WsgiDAV on
127.0.0.1 (testbed/dav_server.py).

Prints both times, their ratio, and the bytes B downloaded. Run: .venv/bin/python bench/remote_cache.py
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "testbed"))
from clones import clones, head  # noqa: E402  (bench/ is the script's own directory)
from dav_server import DavServer  # noqa: E402


def build(tree: Path, *flags: str) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k != "MODELBUILD_CACHE_DIR"} | {"COLUMNS": "200"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "modelbuild", "build", "//...", *flags], cwd=tree, env=env,
                          capture_output=True, text=True)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"the build failed in {tree}:\n{proc.stdout}\n{proc.stderr}")
    return seconds, proc.stdout


def main() -> None:
    commit = head()
    print(f"commit {commit}")
    with tempfile.TemporaryDirectory(prefix="modelbuild-remote-") as tmp, DavServer(Path(tmp) / "server") as server:
        trees = clones(Path(tmp), ("a", "b"), commit)
        cold, out_a = build(trees[0], "--remote-cache", server.url)
        warm, out_b = build(trees[1], "--remote-cache", server.url, "--no-remote-upload")
        line = lambda out: next(l for l in out.splitlines() if l.startswith("remote cache"))  # noqa: E731
        print(f"A, fully cold (empty local and remote cache), uploading: {cold:.1f}s\n  {line(out_a)}")
        print(f"B, empty local cache, warm remote:                        {warm:.1f}s\n  {line(out_b)}")
        print(f"  {out_b.strip().splitlines()[-1]}")
        print(f"ratio B/A: {warm / cold:.3f} ({cold / warm:.1f}x faster)")
        same = all((trees[0] / "out" / p.relative_to(trees[1] / "out")).read_bytes() == p.read_bytes()
                   for p in (trees[1] / "out").rglob("*") if p.is_file())
        print(f"out/ of B byte-identical to A's: {same}")
        downloaded = re.search(r"hits, (\S+ \S+) downloaded", line(out_b))
        print(f"bytes downloaded by B: {downloaded.group(1) if downloaded else '?'}")


if __name__ == "__main__":
    main()

"""Uploading to a remote cache over a thin link, on the example workspace: a cold build with no
remote cache (the baseline) against a cold build that uploads everything to a WsgiDAV server on
127.0.0.1 taking PUT bodies at --rate bytes per second (testbed/dav_server.py). Both are fresh clones
of one commit (--commit, default HEAD: run it on an older commit to compare the engines).

Prints both times, their ratio, the bytes uploaded and how long those bytes take at that rate (the
time uploads would add if the build waited for each one). Run: .venv/bin/python bench/remote_upload.py
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "testbed"))
from clones import clones, head  # noqa: E402  (bench/ is the script's own directory)
from dav_server import DavServer  # noqa: E402
from remote_cache import build  # noqa: E402  (bench/remote_cache.py: one timed build of //...)

UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=4e6, help="bytes per second the server takes (default 4 MB/s)")
    parser.add_argument("--commit", default=None, help="the commit to build (default: HEAD)")
    args = parser.parse_args()
    commit = args.commit or head()
    print(f"commit {commit}, server taking uploads at {args.rate / 1e6:.1f} MB/s")
    with tempfile.TemporaryDirectory(prefix="modelbuild-upload-") as tmp, \
            DavServer(Path(tmp) / "server", rate=args.rate) as server:
        trees = clones(Path(tmp), ("base", "up"), commit)
        base, _ = build(trees[0], "-j", "2")
        up, out = build(trees[1], "-j", "2", "--remote-cache", server.url)
        line = next(l for l in out.splitlines() if l.startswith("remote cache"))
        found = re.search(r"(\S+) (\S+) uploaded", line)
        uploaded = float(found.group(1)) * UNITS[found.group(2)] if found else 0.0
        print(f"cold, no remote cache:        {base:.1f}s")
        print(f"cold, uploading to the cache: {up:.1f}s\n  {line}")
        print(f"bytes uploaded take {uploaded / args.rate:.1f}s at that rate")
        print(f"ratio uploading/baseline: {up / base:.3f} (+{up - base:.1f}s)")


if __name__ == "__main__":
    main()

"""An unchanged large input on a no-op: how many of its bytes the engine reads (goal: none).

A tiny model declares a 2 GB data file (sparse, so it is made at once). The cold build digests it
once; then the no-op (the fast path), and the same no-op down the full path (load, plan, cache
lookups), each run in a process that counts, with an audit hook, the opens of that file, and reports
the bytes it read in all (rchar, from /proc/self/io: Python's own imports included).

    .venv/bin/python bench/big_file_noop.py [--gb 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from workspaces import TINY

REPO = Path(__file__).resolve().parents[1]
DRIVER = """
import json, os, sys
opened = []
sys.addaudithook(lambda e, a: opened.append(os.fsdecode(a[0])) if e == "open" and isinstance(a[0], (str, bytes, os.PathLike)) and os.fsdecode(a[0]).endswith("big.bin") else None)
from modelbuild.__main__ import main
code = main(sys.argv[1:])
io = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
print(json.dumps({"code": code, "opened": len(opened), "rchar": int(io["rchar"])}), file=sys.stderr)
"""


def run(ws: Path, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", DRIVER, "build", *args], cwd=ws, capture_output=True, text=True, env=env)
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    if report["code"] != 0:
        sys.exit(proc.stdout + proc.stderr)
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=2.0)
    size = int(parser.parse_args().gb * 2**30)
    ws = Path(tempfile.mkdtemp(prefix="mb-bigfile-"))
    (ws / "WORKSPACE.models").write_text("")
    (ws / "tiny").mkdir()
    (ws / "tiny" / "__init__.py").write_text("")
    (ws / "tiny" / "net.py").write_text(TINY.format(seed=0, width=32))
    (ws / "tiny" / "BUILD.models").write_text(
        'model(name = "net", entry = "tiny.net:Net", inputs = {"x": tensor([2, 16])}, data = ["big.bin"])\n'
        'pt2_program(name = "net_pt2", model = ":net")\n')
    with open(ws / "tiny" / "big.bin", "wb") as f:
        f.truncate(size)
    old = os.stat(ws / "tiny" / "big.bin").st_mtime - 60  # out of the two-second window a stamp must wait for
    for path in [*ws.rglob("*"), ws]:
        os.utime(path, (old, old))
    rows = [("cold build", run(ws)), ("no-op", run(ws)),
            ("no-op, full path", run(ws, "--build-events", str(ws.parent / f"{ws.name}-events.jsonl")))]
    print(f"\n{size / 2**30:.1f} GB data file, unchanged after the cold build")
    print(f"{'run':<20}{'opens of it':>12}{'bytes read in all':>20}")
    for name, report in rows:
        print(f"{name:<20}{report['opened']:>12}{report['rchar'] / 2**20:>17.1f} MB")
    print(f"goal: 0 bytes of it read on a no-op ({'ok' if rows[1][1]['opened'] == rows[2][1]['opened'] == 0 else 'MISSED'})")


if __name__ == "__main__":
    main()

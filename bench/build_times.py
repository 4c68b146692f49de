"""Wall time of a cold build, a no-op build and a rebuild after one model edit, on the example
workspace (a fresh copy, its own cache). Prints medians of N runs, the actions each ran, and
each time as a ratio of the cold build measured in the same run.

    .venv/bin/python bench/build_times.py [--runs 3] [-j 2]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "testbed"))
from example import copy_example  # noqa: E402


def timed_build(ws: Path, jobs: int) -> tuple[float, int]:
    events = ws / "events.jsonl"
    start = time.perf_counter()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "modelbuild"), "build", "//...", "-j", str(jobs), "--build-events", str(events)],
        cwd=ws, capture_output=True, text=True,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"build failed:\n{proc.stdout}\n{proc.stderr}")
    ran = sum(1 for line in events.read_text().splitlines() if json.loads(line)["status"] == "ran")
    return seconds, ran


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("-j", "--jobs", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, int]]] = {"cold": [], "no-op": [], "edit one model": []}
    for i in range(args.runs):
        ws = copy_example(Path(tempfile.mkdtemp(prefix="mb-bench-")))
        results["cold"].append(timed_build(ws, args.jobs))
        results["no-op"].append(timed_build(ws, args.jobs))
        layers = ws / "models" / "layers.py"  # imported by the transformer only
        layers.write_text(layers.read_text().replace("return self.wo(attention)", f"return self.wo(attention) * {1 + i}.5"))
        results["edit one model"].append(timed_build(ws, args.jobs))
        shutil.rmtree(ws)
    cold = statistics.median(s for s, _ in results["cold"])
    print(f"{'build':<16} {'median s':>9} {'runs (s)':>24} {'actions run':>12} {'÷ cold':>8}")
    for name, runs in results.items():
        secs = [s for s, _ in runs]
        med = statistics.median(secs)
        ran = sorted({n for _, n in runs})
        print(f"{name:<16} {med:>9.2f} {', '.join(f'{s:.2f}' for s in secs):>24} {'/'.join(map(str, ran)):>12} {med / cold:>8.3f}")


if __name__ == "__main__":
    main()

"""modelbuild against a plain script and DVC on the same job, in one run, and the no-op as workspaces grow.

The 4-model set (bench/workspaces.py: the Core ML guide's Transformer, MobileNetV2, a ResNet-18 and a
small BERT, each to an XNNPACK .pte) is built cold by modelbuild (verified, -j 2), by the plain script
(one process, sequential, no verification) and by DVC (a stage per model, a process each), interleaved;
then the no-op, a comment-only edit of the module all four import, and a real edit of one model. Then
the example workspace's no-op, and generated workspaces of 500 targets (100 packages, a model each) and
5,000 targets (1,000 packages of one model). Each row: median wall and CPU seconds, the peak RSS of the
largest process, the ratio to its baseline measured in this run, and the goal.

A no-op is shown two ways: the fast path a user sees (the stamp of the last build, buildsys/cli/noop.py)
and the full path (load, plan, cache lookups: what a changed workspace pays before any action runs),
each with Python's bytecode cache off (these machines set PYTHONDONTWRITEBYTECODE=1) and on.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/speed.py [--runs 1] [--noop-runs 5] [--packages 100] [--only four|example|large]
    .venv/bin/python bench/speed.py --engine /tmp/before ...   # modelbuild from a clone of another commit
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "testbed")]
from example import copy_example  # noqa: E402
from workspaces import four_models, generated  # noqa: E402

BIN = Path(sys.executable).parent
MODELBUILD, DVC = str(BIN / "modelbuild"), str(BIN / "dvc")
# Runs a command and reports its wall time, the CPU time of its whole process tree and the peak RSS of
# its largest process (RUSAGE_CHILDREN: every process it waited for, workers included).
WRAP = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": p.returncode, "wall": wall, "cpu": r.ru_utime + r.ru_stime, "rss": r.ru_maxrss * 1024,
                  "out": p.stdout[-3000:] + p.stderr[-3000:]}))
"""


@dataclass
class Row:
    runs: list[dict] = field(default_factory=list)

    def median(self, what: str) -> float:
        return statistics.median(r[what] for r in self.runs)


# The engine runs from copies of a checkout's packages (this one's, or --engine's) without their
# __pycache__: with bytecode off, Python compiles them on every command, as on a fresh clone on these
# machines (PYTHONDONTWRITEBYTECODE=1); with it on, the second copy keeps its .pyc after the first run.
ENGINES: dict[bool, str] = {}
PACKAGES = ("buildsys", "rules", "modelbuild")


def use_engine(checkout: Path) -> None:
    for bytecode in (False, True):
        root = Path(tempfile.mkdtemp(prefix="mb-engine-"))
        for package in PACKAGES:
            shutil.copytree(checkout / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
        ENGINES[bytecode] = str(root)


def measure(cmd: list[str], cwd: Path, bytecode: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if not bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([ENGINES[bytecode], str(cwd)])  # the script and DVC's stages import models/ from the workspace
    proc = subprocess.run([sys.executable, "-c", WRAP, *cmd], cwd=cwd, capture_output=True, text=True, env=env)
    result = json.loads(proc.stdout)
    if result["rc"] != 0:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{result['out']}")
    return result


def build(ws: Path, *args: str, bytecode: bool = False) -> dict:
    return measure([MODELBUILD, "build", *args], ws, bytecode)


def full_path(ws: Path, bytecode: bool = False) -> dict:
    """A no-op down the full path: a build with --build-events is never answered from a stamp."""
    return build(ws, "--build-events", str(ws.parent / f"{ws.name}-events.jsonl"), bytecode=bytecode)


def ran(ws: Path) -> int:
    events = (ws.parent / f"{ws.name}-events.jsonl").read_text().splitlines()
    return sum(json.loads(line)["status"] == "ran" for line in events)


def dvc_project(ws: Path) -> Path:
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"], [DVC, "config", "core.autostage", "false"]):
        subprocess.run(cmd, cwd=ws, check=True, capture_output=True)
    return ws


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def noops(rows: dict, name: str, ws: Path, n: int, dvc_ws: Path | None = None) -> None:
    """The no-op both ways, bytecode off and on; DVC's beside it where there is one."""
    for bytecode in (False, True):  # each leaves its stamp (one right after the cold build may find its files too fresh)
        build(ws, bytecode=bytecode)
        build(ws, bytecode=bytecode)
    for _ in range(n):
        for bytecode in (False, True):
            tag = " (bytecode cached)" if bytecode else ""
            rows.setdefault(f"{name}: no-op{tag}", Row()).runs.append(build(ws, bytecode=bytecode))
            rows.setdefault(f"{name}: no-op, full path{tag}", Row()).runs.append(full_path(ws, bytecode))
        if dvc_ws is not None:
            rows.setdefault(f"{name}: DVC no-op", Row()).runs.append(measure([DVC, "repro", "-q"], dvc_ws))


def four_model_set(rows: dict, root: Path, runs: int, noop_runs: int) -> None:
    for i in range(runs):  # interleaved: each run builds all three in turn, each in a fresh copy
        mb, script, dvc = (four_models(root / f"{kind}{i}", sys.executable) for kind in ("mb", "script", "dvc"))
        rows.setdefault("4 models: cold, modelbuild -j 2", Row()).runs.append(build(mb, "-j", "2"))
        rows.setdefault("4 models: cold, plain script", Row()).runs.append(measure([sys.executable, "script.py"], script))
        rows.setdefault("4 models: cold, DVC", Row()).runs.append(measure([DVC, "repro", "-q"], dvc_project(dvc)))
    noops(rows, "4 models", mb, noop_runs, dvc)
    for i in range(runs):  # a comment in the module all four import: their exports rerun and come out the same
        for ws, kind in ((mb, "modelbuild"), (dvc, "DVC")):
            edit(ws / "models" / "shared.py", '"""What', f'# edit {i}\n"""What')
            cmd = [MODELBUILD, "build", "--build-events", str(ws.parent / f"{ws.name}-events.jsonl")] if kind == "modelbuild" else [DVC, "repro", "-q"]
            rows.setdefault(f"4 models: comment edit, {kind}", Row()).runs.append(measure(cmd, ws))
    for i in range(runs):  # a real edit of one model: exactly its own actions run again
        before = "intermediate_size=512" + (f", layer_norm_eps=1e-{5 + i}" if i else "")  # the last run's edit
        edit(mb / "models" / "bert.py", before, f"intermediate_size=512, layer_norm_eps=1e-{6 + i}")
        result = full_path(mb)
        result["ran"] = ran(mb)
        rows.setdefault("4 models: real edit of bert, modelbuild", Row()).runs.append(result)
        alone = four_models(root / f"bert{i}")
        edit(alone / "models" / "bert.py", "intermediate_size=512", f"intermediate_size=512, layer_norm_eps=1e-{6 + i}")
        result = build(alone, "//:bert_xnnpack", "--build-events", str(alone.parent / f"{alone.name}-events.jsonl"))
        result["ran"] = ran(alone)
        rows.setdefault("4 models: bert alone, cold", Row()).runs.append(result)


def large(rows: dict, root: Path, name: str, packages: int, shared: bool, noop_runs: int) -> None:
    ws = generated(root / name, packages, shared_model=shared)
    rows.setdefault(f"{name}: cold -j 2", Row()).runs.append(build(ws, "-j", "2"))
    noops(rows, name, ws, noop_runs)
    for _ in range(noop_runs):
        rows.setdefault(f"{name}: query //...", Row()).runs.append(measure([MODELBUILD, "query", "//...", "--output", "label"], ws))
    if not shared:
        edit(ws / "p000" / "m00000" / "net.py", "torch.relu(", "torch.tanh(")
        result = full_path(ws)
        result["ran"] = ran(ws)
        rows.setdefault(f"{name}: edit of one package", Row()).runs.append(result)


GOALS = [  # (row, baseline row or a number of seconds, goal as a ratio or seconds, which)
    ("4 models: cold, modelbuild -j 2", "4 models: cold, plain script", 0.6, "wall"),
    ("4 models: cold, modelbuild -j 2", "4 models: cold, plain script", 1.05, "cpu"),
    ("4 models: cold, modelbuild -j 2", "4 models: cold, plain script", 1.1, "rss"),
    ("4 models: cold, modelbuild -j 2", "4 models: cold, DVC", 0.3, "wall"),
    ("4 models: comment edit, modelbuild", "4 models: comment edit, DVC", 0.08, "wall"),
    ("4 models: real edit of bert, modelbuild", "4 models: bert alone, cold", 1.0, "wall"),
    ("4 models: no-op", "4 models: DVC no-op", 0.25, "wall"),
    ("4 models: no-op, full path", "4 models: DVC no-op", 0.25, "wall"),
    ("example: no-op", None, 0.2, "wall"),
    ("500 targets: no-op", None, 0.6, "wall"),
    ("500 targets: no-op, full path", None, 0.6, "wall"),
    ("500 targets: query //...", None, 0.4, "wall"),
    ("5000 targets: no-op", None, 2.0, "wall"),
    ("5000 targets: no-op, full path", None, 2.0, "wall"),
]


def table(rows: dict) -> None:
    print(f"\n{'scenario':<52} {'wall s':>8} {'cpu s':>8} {'peak MB':>8} {'ran':>5}  {'vs':<36} {'ratio':>7} {'goal':>7}")
    goals = {}
    for row, base, goal, what in GOALS:
        goals.setdefault(row, []).append((base, goal, what))
    for name, row in rows.items():
        ran_ = "/".join(str(r) for r in sorted({r["ran"] for r in row.runs if "ran" in r})) or ""
        head = f"{name:<52} {row.median('wall'):>8.2f} {row.median('cpu'):>8.2f} {row.median('rss') / 2**20:>8.0f} {ran_:>5}"
        checks = goals.get(name) or [(None, None, None)]
        for i, (base, goal, what) in enumerate(checks):
            if base is None and goal is not None:
                verdict = "ok" if row.median(what) <= goal else "MISSED"
                tail = f"  {'(seconds)':<36} {row.median(what):>7.2f} {'<= ' + str(goal):>7} {verdict}"
            elif base is not None and base in rows:
                ratio = row.median(what) / rows[base].median(what)
                verdict = "ok" if ratio <= goal else "MISSED"
                tail = f"  {what + ' vs ' + base[:28]:<36} {ratio:>7.2f} {'<= ' + str(goal):>7} {verdict}"
            else:
                tail = ""
            print((head if i == 0 else " " * len(head)) + tail)
    noop = {n: rows[f"{n} targets: no-op"].median("wall") for n in (500, 5000) if f"{n} targets: no-op" in rows}
    if len(noop) == 2:
        print(f"\nno-op cost of each extra target (500 -> 5000 targets): {(noop[5000] - noop[500]) / 4500 * 1e3:.3f} ms (goal <= 0.5 ms)")
    full = {n: rows[f"{n} targets: no-op, full path"].median("wall") for n in (500, 5000) if f"{n} targets: no-op, full path" in rows}
    if len(full) == 2:
        print(f"full-path no-op cost of each extra target: {(full[5000] - full[500]) / 4500 * 1e3:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1, help="cold builds and edits (they take minutes)")
    parser.add_argument("--noop-runs", type=int, default=5)
    parser.add_argument("--packages", type=int, default=100, help="packages of the generated workspace (5 targets each)")
    parser.add_argument("--only", choices=["four", "example", "large"], help="one part of the benchmark")
    parser.add_argument("--engine", metavar="CHECKOUT", help="run modelbuild from this checkout (a clone of another commit)")
    args = parser.parse_args()
    use_engine(Path(args.engine).resolve() if args.engine else HERE.parent)
    root = Path(tempfile.mkdtemp(prefix="mb-speed-"))
    rows: dict[str, Row] = {}
    started = time.monotonic()
    if args.only in (None, "four"):
        four_model_set(rows, root, args.runs, args.noop_runs)
    if args.only in (None, "example"):
        ws = copy_example(root / "example")
        rows["example: cold -j 2"] = Row([build(ws, "-j", "2")])
        noops(rows, "example", ws, args.noop_runs)
    if args.only in (None, "large"):
        large(rows, root, f"{args.packages * 5} targets", args.packages, False, args.noop_runs)
        large(rows, root, f"{args.packages * 50} targets", args.packages * 10, True, args.noop_runs)
    table(rows)
    print(f"\n(benchmark took {time.monotonic() - started:.0f} s; workspaces in {root})")


if __name__ == "__main__":
    main()

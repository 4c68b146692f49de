"""SIGKILL to the CLI (or to its whole process group) at random moments of cold and partial builds:
no worker outlives it by more than 3 s, and the next build completes with the bytes of a clean build
and leaves no scratch behind."""
from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import REPO, run_cli, workers

TARGETS = ("//...",)
# The release workspace's tiny MLP as a .pt2 and a portable .pte: four actions and two outputs for
# little more than a worker's start (an XNNPACK target would add the partitioner's 5 s import).
BUILD = """
model(name = "mlp", entry = "models.nets:TinyMLP", inputs = {"x": tensor([4, 16])},
      dynamic_shapes = {"x": {0: dim("batch", min = 2, max = 8)}})
pt2_program(name = "mlp_pt2", model = ":mlp")
executorch_program(name = "mlp_portable", model = ":mlp")
"""
ROUNDS = 10
SEED = 8
SCRATCH = re.compile(r"^\.tmp-\d+-")  # buildsys.cache.scratch.prefix()


def tiny_workspace(dst: Path) -> Path:
    src = REPO / "tests" / "workspaces" / "release"
    shutil.copytree(src / "models", dst / "models", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(src / "WORKSPACE.models", dst)
    (dst / "BUILD.models").write_text(BUILD)
    return dst.resolve()


def digests(out: Path) -> dict[str, str]:
    """sha256 of every artifact file under out/ (not the engine's hidden lock)."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def scratch_left(*dirs: Path) -> list[str]:
    return [str(p) for d in dirs if d.exists() for p in d.rglob("*") if SCRATCH.match(p.name)]


def start(ws: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MODELBUILD_CACHE_DIR"}
    # Its own process group, so that killpg reaches the CLI and not pytest.
    return subprocess.Popen([sys.executable, "-m", "modelbuild", "build", *TARGETS, "-j", "1"], cwd=ws, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def gone_within(ws: Path, seconds: float) -> tuple[float, list[int]]:
    """How long the workspace's workers took to vanish, and those still alive after `seconds`."""
    started = time.monotonic()
    while (alive := workers(ws)) and time.monotonic() - started < seconds:
        time.sleep(0.05)
    return time.monotonic() - started, alive


def kill_round(ws: Path, moment: float, cold_start: bool, group: bool) -> tuple[bool, float, list[int]] | None:
    """Build, SIGKILL the CLI (or its group) after `moment` s; None if the build was over by then.
    Returns whether a worker was alive at the kill, how long the workers took to go, and those left."""
    if cold_start:
        shutil.rmtree(ws / "cache", ignore_errors=True)
        shutil.rmtree(ws / "out", ignore_errors=True)
    cli = start(ws)
    try:
        cli.wait(timeout=moment)
        return None
    except subprocess.TimeoutExpired:
        pass
    had_workers = bool(workers(ws))
    os.killpg(cli.pid, signal.SIGKILL) if group else cli.kill()
    cli.wait()
    return had_workers, *gone_within(ws, 3.0)


def test_sigkill_at_random_moments_then_build_matches_a_clean_one(tmp_path: Path):
    reference = tiny_workspace(tmp_path / "reference")
    began = time.monotonic()
    proc = run_cli(reference, "build", *TARGETS, "-j", "1")
    cold = time.monotonic() - began
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = digests(reference / "out")
    assert set(expected) == {"mlp_pt2.pt2", "mlp_portable.pte"}

    ws = tiny_workspace(tmp_path / "killed")
    rng = random.Random(SEED)
    # One moment in each tenth of the cold build, in random order: every phase is hit.
    moments = [cold * (i + rng.random()) / ROUNDS for i in range(ROUNDS)]
    rng.shuffle(moments)
    rounds, misses = [], 0
    for n, moment in enumerate(moments):
        cold_start = n % 3 == 0  # else resume what the last round left
        group = n % 2 == 1  # odd rounds kill the whole process group
        while (result := kill_round(ws, moment, cold_start, group)) is None:
            misses += 1  # the build was done before the moment came: again, cold, a little earlier
            cold_start, moment = True, moment * 0.8
        had_workers, took, alive = result
        for pid in alive:  # don't leave them to the rest of the suite
            os.kill(pid, signal.SIGKILL)
        assert not alive, f"round {n}: workers {alive} alive 3 s after SIGKILL to the CLI at {moment:.1f} s"
        rounds.append((round(moment, 1), "cold" if cold_start else "partial", "killpg" if group else "kill",
                       had_workers, round(took, 2)))
    print(f"\ncold build {cold:.1f} s; {misses} builds done before their moment; "
          f"kills (moment, start, signal, worker alive, s to gone): {rounds}")
    assert sum(r[3] for r in rounds) >= ROUNDS // 2, "most kills came before any worker started"

    proc = run_cli(ws, "build", *TARGETS, "-j", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert digests(ws / "out") == expected
    assert scratch_left(ws / "cache", ws / "out") == []
    assert gone_within(ws, 3.0)[1] == []


STUCK_STEP = '''import os, re, subprocess, sys


def preload():  # a worker's runner module (RuleSet.worker)
    workspace = sys.path[0]  # the worker main puts the workspace first
    child = subprocess.Popen(["sleep", "600"])  # as AOTInductor's g++
    with open(os.path.join(workspace, "pids.tmp"), "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    os.rename(os.path.join(workspace, "pids.tmp"), os.path.join(workspace, "pids"))
    re.match(r"(a*)*b", "a" * 64)  # C code that never lets go of the GIL, as deep in the toolchain
'''
ENGINE = ("import sys, time; from pathlib import Path; from buildsys.exec.pool import Worker; "
          "Worker(0, 'stuck_step', Path(sys.argv[1]), Path(sys.argv[1]) / 'worker.log'); time.sleep(600)")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_steps_subprocess_dies_with_its_worker_when_the_engine_is_killed(tmp_path: Path):
    (tmp_path / "stuck_step.py").write_text(STUCK_STEP)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    engine = subprocess.Popen([sys.executable, "-c", ENGINE, str(tmp_path)], env=env, start_new_session=True)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "pids").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
        engine.kill()
        engine.wait()
        deadline = time.monotonic() + 3
        while any(map(alive, pids)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in pids if alive(pid)], "the worker or its subprocess outlived the engine by 3 s"
    finally:
        engine.kill()
        for pid in filter(alive, pids):
            os.kill(pid, signal.SIGKILL)

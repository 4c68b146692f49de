"""`modelbuild cache gc` bounds the CAS least recently used first, never removes what out/ holds or
what a running build has used, and leaves a cache the next build trusts; `cache stats` says what
the cache holds. Blob ages are set with os.utime, as days of use would leave them."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import build, by_status, read_events, run_cli

from buildsys.cache.gc import CLOCK_SLACK_NS

DAY = 86_400


def blobs(ws: Path) -> dict[str, Path]:
    return {p.parent.name + p.name: p for p in (ws / "cache" / "cas").glob("??/*") if p.is_file()}


def age(path: Path, days: float) -> None:
    when = time.time() - days * DAY
    os.utime(path, (when, when))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def ws(tiny_ws) -> Path:  # tests/conftest.py: the release workspace with //:mlp_pt2 built
    return tiny_ws


def test_stats_says_what_the_cache_holds(ws):
    proc = run_cli(ws, "cache", "stats")
    assert proc.returncode == 0, proc.stderr
    assert f"CAS: {len(blobs(ws))} blobs" in proc.stdout and "held by out/: 1 blob" in proc.stdout, proc.stdout
    assert "action cache:" in proc.stdout and "stat/" in proc.stdout


def test_least_recently_used_first_and_never_what_out_holds(ws):
    artifact = sha(ws / "out" / "mlp_pt2.pt2")
    others = sorted((p for d, p in blobs(ws).items() if d != artifact), key=lambda p: p.stat().st_size)
    assert len(others) >= 2  # the actions' logs
    for days, path in enumerate(others, start=1):
        age(path, days)  # the smallest was used most recently: least recently used is not smallest first
    age(blobs(ws)[artifact], 30)  # out/ holds it: kept however old
    total = sum(p.stat().st_size for p in blobs(ws).values())

    proc = run_cli(ws, "cache", "gc", "--max-size", str(total - 1))  # one byte to free: the oldest blob goes
    assert proc.returncode == 0, proc.stderr
    assert set(blobs(ws).values()) == set(others[:-1]) | {ws / "cache" / "cas" / artifact[:2] / artifact[2:]}
    assert "removed 1 blob" in proc.stdout, proc.stdout

    proc = run_cli(ws, "cache", "gc", "--older-than", str(len(others) - 1.5))  # unused for longer than that
    assert proc.returncode == 0, proc.stderr
    assert set(blobs(ws).values()) == set(others[:-2]) | {blobs(ws)[artifact]}

    proc = run_cli(ws, "cache", "gc", "--max-size", "0")
    assert proc.returncode == 0, proc.stderr
    assert set(blobs(ws)) == {artifact}, "only what out/ holds is left"
    assert "1 blob" in proc.stdout and "that out/ holds" in proc.stdout and "stays above --max-size" in proc.stdout

    # Records whose blobs went are misses: their actions run again (the export, whose eager outputs
    # went though its program stayed, and the check) and make the same bytes.
    proc, events = build(ws, "//:mlp_pt2", extra=("-j", "1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert by_status(events, "ran") == {("export", "//:mlp_pt2"), ("verify", "//:mlp_pt2")}
    assert sha(ws / "out" / "mlp_pt2.pt2") == artifact


def test_gc_while_a_build_runs_keeps_what_the_build_has_used(ws):
    """The build looks up the export (a hit) and hands its blob to a worker that is still importing
    torch, to decompose it; gc, run then, must not take the blob from under it."""
    with open(ws / "BUILD.models", "a") as f:
        f.write('pt2_program(name = "mlp_core", model = ":mlp", decompose = "core_aten")\n')
    shutil.rmtree(ws / "out")  # nothing held: every blob is a candidate
    for path in blobs(ws).values():
        age(path, 10)
    export = next(d for d, p in blobs(ws).items() if p.stat().st_size > 10_000)
    env = {k: v for k, v in os.environ.items() if k != "MODELBUILD_CACHE_DIR"}
    proc = subprocess.Popen([sys.executable, "-m", "modelbuild", "build", "//:mlp_core", "-j", "1",
                             "--build-events", "events.jsonl"], cwd=ws, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while blobs(ws)[export].stat().st_mtime < time.time() - DAY and time.time() < deadline:
            time.sleep(0.05)  # until the build has used the export's blob
        time.sleep(CLOCK_SLACK_NS / 1e9 + 0.5)  # no longer "just used": only the build's session keeps it now
        gc = run_cli(ws, "cache", "gc", "--older-than", "1")
        output, _ = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert gc.returncode == 0, gc.stderr
    assert export in blobs(ws), "gc removed a blob the running build had looked up"
    assert "since the 1 running build started" in gc.stdout, gc.stdout
    assert proc.returncode == 0, output
    events = read_events(ws / "events.jsonl")
    assert {e["step"]: e["status"] for e in events} == {"export": "cached", "decompose": "ran", "verify": "ran"}


@pytest.mark.parametrize("args, phrase", [
    ((), "--max-size SIZE"),
    (("--max-size", "5 parsecs"), "expected a size such as 500M"),
    (("--older-than", "-1"), "0 or more"),
])
def test_gc_arguments(ws, args, phrase):
    proc = run_cli(ws, "cache", "gc", *args)
    assert proc.returncode == 2 and phrase in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_gc_removes_idle_action_locks_but_not_held_ones(ws):
    from filelock import FileLock

    locks = ws / "cache" / "locks"
    assert list(locks.glob("*.lock")), "a build leaves one lock file per action it ran"
    held = FileLock(locks / ("f" * 64 + ".lock"), blocking=False)
    held.acquire()  # as a running build holds the lock of the action it runs
    try:
        for path in locks.glob("*.lock"):
            age(path, 1)
        proc = run_cli(ws, "cache", "gc", "--older-than", "30")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert [p.name for p in locks.glob("*.lock")] == ["f" * 64 + ".lock"]
    finally:
        held.release()


def test_gc_removes_the_stamps_of_commands_not_run_lately(ws):
    stamps = ws / "cache" / "stamps"
    for args in (("//:mlp_pt2",), ("//:mlp_pt2", "-j", "1")):
        for _ in range(2):  # the first leaves its command a stamp; a second, on the fast path, uses it
            proc = run_cli(ws, "build", *args)
            assert proc.returncode == 0, proc.stdout + proc.stderr
    old, recent = sorted(stamps.iterdir(), key=lambda p: p.stat().st_mtime)
    age(old, 40)
    age(recent, 40)
    proc = run_cli(ws, "build", "//:mlp_pt2", "-j", "1")  # answered from its stamp, which it touches
    assert proc.returncode == 0 and "0 actions run" in proc.stdout, proc.stdout + proc.stderr
    proc = run_cli(ws, "cache", "gc", "--older-than", "30")
    assert proc.returncode == 0 and "removed 1 no-op stamp" in proc.stdout, proc.stdout + proc.stderr
    assert len(list(stamps.iterdir())) == 1

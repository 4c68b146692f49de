"""Faults of the machine, not of the build: a file where out/ must be, a read-only cache, a full disk.
Each gives one clear message that says what to do (exit 2, no traceback), and nothing already
cached is lost: once the fault is gone, the next build runs nothing for what was built before."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import build, by_status, run_cli

BUILT, NEW = "//:mlp_pt2", "//:mlp_xnnpack"  # in the cache already; not yet (it must write)


def can_mount() -> bool:
    probe = Path("/proc/self/mountinfo")
    if os.geteuid() != 0 or not probe.exists():
        return False
    with contextlib.suppress(OSError):
        return subprocess.run(["mount", "--version"], capture_output=True).returncode == 0
    return False


@contextlib.contextmanager
def mounted(*args: str):
    target = args[-1]
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount here: {proc.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", target], check=True)


@pytest.fixture
def ws(tiny_ws) -> Path:  # tests/conftest.py: the release workspace with //:mlp_pt2 built
    return tiny_ws


def assert_clear(proc: subprocess.CompletedProcess, *phrases: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(error) == 1, proc.stderr
    for phrase in phrases:
        assert phrase in proc.stderr, proc.stderr


def assert_nothing_lost(ws: Path, cache: Path | None = None) -> None:
    extra = ("--cache-dir", str(cache)) if cache else ()
    proc, events = build(ws, BUILT, events="after.jsonl", extra=("-j", "1", *extra))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert by_status(events, "ran") == set() and by_status(events, "cached"), events
    assert not [p for p in ((cache or ws / "cache") / "cas").rglob(".tmp-*")], "a failed write left scratch in the CAS"


def test_out_is_a_regular_file(ws):
    shutil.rmtree(ws / "out")
    (ws / "out").write_text("not a directory")
    proc = run_cli(ws, "build", BUILT, "-j", "1")
    assert_clear(proc, f"{ws / 'out'} is a file", "move or remove")
    (ws / "out").unlink()
    assert_nothing_lost(ws)


def test_a_read_only_cache(ws):
    cache = ws / "cache"
    with contextlib.ExitStack() as stack:
        if can_mount():  # root writes through file modes: make the file system itself read-only
            stack.enter_context(mounted("--bind", str(cache), str(cache)))
            subprocess.run(["mount", "-o", "remount,bind,ro", str(cache)], check=True)
        elif os.geteuid() == 0:
            pytest.skip("root without mount: file modes do not stop root's writes")
        else:
            modes = {p: p.stat().st_mode for p in [cache, *cache.rglob("*")]}
            stack.callback(lambda: [p.chmod(m) for p, m in modes.items()])
            for p, mode in modes.items():
                p.chmod(mode & ~0o222)
        for target in (NEW, BUILT):  # one that must write, one that could only read
            assert_clear(run_cli(ws, "build", target, "-j", "1"), f"cannot write {cache}", "Make it writable",
                         "--cache-dir")
        verbose = run_cli(ws, "--verbose", "build", NEW, "-j", "1")
        assert verbose.returncode == 2 and "Traceback" in verbose.stderr  # --verbose keeps it
    assert_nothing_lost(ws)


def test_a_full_disk(ws, tmp_path):
    """The cache on a small tmpfs filled to the last byte: SQLite then fails with 'disk I/O error',
    which the file system itself shows to be a full disk."""
    if not can_mount():
        pytest.skip("needs root to mount a small tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted("-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)):
        cache = disk / "cache"
        shutil.copytree(ws / "cache", cache)
        # Unbuffered: a write that fails leaves nothing behind for close() to flush (and fail on) again.
        with open(disk / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * (1 << 16))
        with open(disk / "filler", "ab", buffering=0) as filler, contextlib.suppress(OSError):
            for _ in range(1 << 14):  # the last pages a smaller write still fits in
                filler.write(b"\0" * 256)
        assert shutil.disk_usage(disk).free < (1 << 16)
        proc = run_cli(ws, "build", NEW, "-j", "1", "--cache-dir", str(cache))
        assert_clear(proc, "no space left", str(cache), "cache gc")
        (disk / "filler").unlink()
        assert_nothing_lost(ws, cache)

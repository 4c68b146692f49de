"""Shared helpers: copy the example workspace, run the real CLI in a subprocess, read events."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_FILES = ["WORKSPACE.models", "BUILD.models", "defs.star", "models"]


def copy_example(dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in EXAMPLE_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst / name)
    return dst


def run_cli(workspace: Path, *args: str, timeout: float = 900, env: dict | None = None,
            umask: int | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "MODELBUILD_CACHE_DIR"}
    full_env.update(COLUMNS="200", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "buildsys.cli", *args],
        cwd=workspace, capture_output=True, text=True, timeout=timeout, env=full_env,
        preexec_fn=None if umask is None else lambda: os.umask(umask),
    )


def build(workspace: Path, *patterns: str, events: str = "events.jsonl", extra: tuple = ()) -> tuple[subprocess.CompletedProcess, list[dict]]:
    path = workspace / events
    proc = run_cli(workspace, "build", *(patterns or ("//...",)), "--build-events", str(path), *extra)
    return proc, read_events(path)


def read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def by_status(events: list[dict], status: str) -> set[tuple[str, str]]:
    """(step, label) of the actions with this status."""
    return {(e["step"], e["label"]) for e in events if e["status"] == status}


def action_results(workspace: Path, events: list[dict]) -> dict:
    """(step, label) -> the ActionResult in the cache, for every action that ran or was cached."""
    from buildsys.action_cache import ActionCache

    cache = ActionCache(workspace / "cache")
    try:
        return {(e["step"], label): cache.get(e["action_key"])
                for e in events if e["status"] in ("ran", "cached") for label in e["labels"]}
    finally:
        cache.close()

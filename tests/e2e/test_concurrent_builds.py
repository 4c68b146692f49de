"""Four clones of one workspace built at once on one cache: all succeed with the same bytes, and
together they run each action once, as one cold build does (the others wait for it, then take its
result from the cache)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import read_events
from test_kill import digests, gone_within, scratch_left, tiny_workspace

CLONES = 4


def test_four_clones_on_one_cache_run_each_action_once(tmp_path: Path):
    cache = tmp_path / "cache"
    clones = [tiny_workspace(tmp_path / f"clone{i}") for i in range(CLONES)]
    env = {k: v for k, v in os.environ.items() if k != "MODELBUILD_CACHE_DIR"}
    procs = [subprocess.Popen([sys.executable, "-m", "modelbuild", "build", "//...", "-j", "1",
                               "--cache-dir", str(cache), "--build-events", str(ws / "events.jsonl")],
                              cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for ws in clones]
    outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * CLONES, "\n".join(outputs)

    expected = digests(clones[0] / "out")
    assert set(expected) == {"mlp_pt2.pt2", "mlp_portable.pte"}
    assert all(digests(ws / "out") == expected for ws in clones)

    assert scratch_left(cache, *(ws / "out" for ws in clones)) == []
    assert all(gone_within(ws, 3.0)[1] == [] for ws in clones)

    events = [read_events(ws / "events.jsonl") for ws in clones]
    # Every build has the same actions, each of them ran or came from the cache: they are what
    # one cold build runs.
    actions = {e["action_key"] for e in events[0]}
    assert all({e["action_key"] for e in build} == actions for build in events)
    ran = [sum(e["status"] == "ran" for e in build) for build in events]
    print(f"\nactions run per build: {ran}, total {sum(ran)}; one cold build runs {len(actions)}")
    assert sum(ran) == len(actions), f"{sum(ran)} actions run by {CLONES} builds, where {len(actions)} were needed"

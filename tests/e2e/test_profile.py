"""A build's phase times: each action's wait for a free worker, staging of inputs, wait for the step to
start (a worker still starting), run and storing, in --build-events, and --profile's Chrome trace with a
row per worker."""
from __future__ import annotations

import json

from helpers import build, by_status


def test_events_and_the_profile_show_where_each_action_spent_its_time(tiny_ws):
    profile = tiny_ws.parent / "profile.json"
    proc, events = build(tiny_ws, "//:mlp_xnnpack", extra=("-j", "2", "--profile", str(profile)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = [e for e in events if e["status"] == "ran"]
    assert ran and by_status(events, "cached")  # the export was built before: a hit, on the engine's row
    for event in ran:
        assert set(event["phases"]) == {"wait", "inputs", "worker", "run", "store"}
        assert all(seconds >= 0 for seconds in event["phases"].values())
        assert abs(event["phases"]["run"] - event["seconds"]) < 0.01
        assert event["worker"] in ("worker 0", "worker 1")
    trace = json.loads(profile.read_text())["traceEvents"]
    rows = {e["tid"]: e["args"]["name"] for e in trace if e["ph"] == "M"}
    assert rows[0] == "engine" and set(rows.values()) - {"engine"} <= {"worker 0", "worker 1"}
    spans = [e for e in trace if e["ph"] == "X" and e["name"].startswith(("partition ", "verify "))]
    assert len(spans) == len(ran) and all(e["dur"] > 0 and rows[e["tid"]].startswith("worker") for e in spans)
    assert any(e["name"].startswith("cached: export") and rows[e["tid"]] == "engine" for e in trace)

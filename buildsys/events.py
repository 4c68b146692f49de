"""What a build tells tools: --build-events, one JSON line per action (like Bazel's BEP, much
smaller), and --profile, a Chrome trace of the build (like Bazel's --profile): one row per worker,
each action's staging, run and storing on it, for chrome://tracing or https://ui.perfetto.dev."""
from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from .exec.scheduler import Outcome


class EventLog:
    def __init__(self, path: Path | None):
        self._file: IO[str] | None = open(path, "w") if path else None

    def action(self, outcome: Outcome) -> None:
        if self._file is None:
            return
        record = {
            "label": str(outcome.action.label),
            "labels": sorted(str(l) for l in outcome.action.owners),
            "step": outcome.action.step,
            "action_id": outcome.action.id,
            "action_key": outcome.key,
            "status": outcome.status,
            "seconds": round(outcome.seconds, 3),
        }
        if outcome.reasons:
            record["reasons"] = outcome.reasons
        if outcome.error:
            record["error"] = outcome.error
        if outcome.replayed is not None:
            record["replayed"] = True  # the failure recorded for this key, not a new run
        if outcome.phases is not None:
            record["phases"] = {name: round(seconds, 3) for name, seconds in outcome.phases.items()}
            record["worker"] = outcome.worker
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def write_profile(path: Path, outcomes: list[Outcome]) -> None:
    """The Chrome trace-event JSON of a build: an "engine" row with the cache hits, a row per worker."""
    rows = {"engine": 0}
    events: list[dict] = []

    def span(name: str, row: str, start: float, seconds: float, args: dict | None = None) -> None:
        tid = rows.setdefault(row, len(rows))
        events.append({"name": name, "ph": "X", "pid": 1, "tid": tid, "ts": round(start * 1e6),
                       "dur": max(1, round(seconds * 1e6)), "args": args or {}})

    for o in sorted(outcomes, key=lambda o: o.start):
        name = f"{o.action.step} {o.action.label}"
        if o.phases is None:  # resolved without running: a cache hit, a replayed failure, a skip
            span(f"{o.status}: {name}", "engine", o.start, 0, {"key": o.key})
            continue
        row = o.worker or "worker"
        at = o.start + o.phases["wait"]
        span(name, row, at, sum(o.phases.values()) - o.phases["wait"],
             {"status": o.status, "key": o.key, **{k: round(v, 3) for k, v in o.phases.items()}})
        for phase in ("inputs", "worker", "run", "store"):
            span(phase, row, at, o.phases[phase])
            at += o.phases[phase]
    names = [{"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": row}} for row, tid in rows.items()]
    path.write_text(json.dumps({"traceEvents": names + events, "displayTimeUnit": "ms"}))

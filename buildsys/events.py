"""--build-events: one JSON line per action, for CI and tools (like Bazel's BEP, much smaller)."""
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
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

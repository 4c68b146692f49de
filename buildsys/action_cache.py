"""The action cache: action key -> the small record of what the action produced (diskcache).

It also remembers deterministic failures by key (as Olive replays a cached pass failure): an
action that failed with exactly these inputs fails again at once, until an input changes or the
user asks for a retry. Only failures the step itself reported are recorded; a worker that died or
an engine fault says nothing about the inputs and is never recorded.
"""
from __future__ import annotations

import time
from pathlib import Path

import diskcache
from pydantic import BaseModel


class OutputRecord(BaseModel):
    digest: str
    is_tree: bool = False
    size: int = 0


class ActionResult(BaseModel):
    step: str
    outputs: dict[str, OutputRecord]
    metrics: dict = {}
    log: str | None = None  # CAS digest of the action's captured stdout and stderr
    seconds: float = 0.0


class FailureRecord(BaseModel):
    step: str
    error: str
    log: str | None = None  # CAS digest of the failed run's log
    show_log: bool = True  # the log tail is worth showing (a toolchain failure)
    seconds: float = 0.0  # how long the failing run took
    at: float = 0.0  # when it failed (time.time())


class ActionCache:
    def __init__(self, root: Path):
        # diskcache commits each set in one SQLite transaction: a record is whole or absent.
        self._db = diskcache.Cache(str(root / "ac"))

    def get(self, key: str) -> ActionResult | None:
        raw = self._db.get(key)
        return ActionResult.model_validate_json(raw) if raw is not None else None

    def put(self, key: str, result: ActionResult) -> None:
        self._db.set(key, result.model_dump_json())
        self._db.delete(("failure", key))  # a retry that succeeded ends the recorded failure

    def get_failure(self, key: str) -> FailureRecord | None:
        raw = self._db.get(("failure", key))
        return FailureRecord.model_validate_json(raw) if raw is not None else None

    def put_failure(self, key: str, failure: FailureRecord) -> None:
        self._db.set(("failure", key), failure.model_copy(update={"at": failure.at or time.time()}).model_dump_json())

    # Notes: the key material last built for a (target, step), for --explain. Not results.
    def get_note(self, name: str) -> dict | None:
        return self._db.get(("note", name))

    def put_note(self, name: str, value: dict) -> None:
        self._db.set(("note", name), value)

    def __len__(self) -> int:
        return len(self._db)

    def close(self) -> None:
        self._db.close()

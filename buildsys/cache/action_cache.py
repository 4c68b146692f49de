"""The action cache: action key -> the small record of what the action produced (diskcache).

It also remembers deterministic failures by key (as Olive replays a cached pass failure): an
action that failed with exactly these inputs fails again at once, until an input changes or the
user asks for a retry. Only failures the step itself reported are recorded; a worker that died or
an engine fault says nothing about the inputs and is never recorded.

A record names the key it was stored under and the digest of its own content: a record that
does not parse, does not validate, sits under another key or does not match its digest (a copied,
edited or torn record, a pickled row) is dropped as a miss, with a warning. A store SQLite cannot
read is moved aside and started afresh: the CAS keeps the blobs, so the cost is rerunning, never a
wrong result.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from pydantic import BaseModel, ValidationError

from ..digests import canonical_json, digest_json
from .plain_store import UNREADABLE, open_store


class OutputRecord(BaseModel):
    digest: str
    is_tree: bool = False
    size: int = 0


class ActionResult(BaseModel):
    step: str
    outputs: dict[str, OutputRecord]
    metrics: dict = {}
    warnings: list[str] = []
    log: str | None = None  # CAS digest of the action's captured stdout and stderr
    seconds: float = 0.0

    def reported(self) -> dict:
        """What a METRICS input holds: the metrics, and the warnings under "warnings" if any."""
        return {**self.metrics, **({"warnings": self.warnings} if self.warnings else {})}


class _Sealed(BaseModel):
    """What the store holds: a record, the key it belongs to, and the digest of both."""

    key: str
    record: dict
    digest: str

    @staticmethod
    def seal(key: str, record: BaseModel) -> str:
        body = record.model_dump(mode="json")
        return canonical_json({"key": key, "record": body, "digest": digest_json({"key": key, "record": body})})

    def opened(self, key: str) -> dict | None:
        if self.key != key or self.digest != digest_json({"key": self.key, "record": self.record}):
            return None
        return self.record


class FailureRecord(BaseModel):
    step: str
    error: str
    log: str | None = None  # CAS digest of the failed run's log
    show_log: bool = True  # the log tail is worth showing (a toolchain failure)
    seconds: float = 0.0  # how long the failing run took
    at: float = 0.0  # when it failed (time.time())


class ActionCache:
    """Records by key, as plain JSON text: results under the key, failures under "failure:<key>",
    --explain's notes under "note:<target/step>"."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.warnings: list[str] = []  # what was wrong with the store, for the build's summary
        # diskcache commits each set in one SQLite transaction: a record is whole or absent.
        self._db = open_store(directory, "action cache", self.warnings)

    def _read(self, name: str, key: str, model: type[BaseModel]):
        try:
            raw = self._db.get(name)
        except UNREADABLE as err:
            self._drop(name, key, f"unreadable ({type(err).__name__})")
            return None
        if raw is None:
            return None
        try:
            record = _Sealed.model_validate_json(raw).opened(key)
            if record is None:
                self._drop(name, key, "stored under another key, or altered since it was written")
                return None
            return model.model_validate(record)
        except (ValidationError, ValueError, TypeError) as err:
            self._drop(name, key, f"malformed ({type(err).__name__})")
            return None

    def _drop(self, name: str, key: str, why: str) -> None:
        self.warnings.append(f"dropped the action-cache record {key[:16]}: {why}; it counts as a miss")
        try:
            self._db.delete(name)
        except UNREADABLE:
            pass

    def get(self, key: str) -> ActionResult | None:
        return self._read(key, key, ActionResult)

    def put(self, key: str, result: ActionResult) -> None:
        self._db.set(key, _Sealed.seal(key, result))
        self._db.delete(f"failure:{key}")  # a retry that succeeded ends the recorded failure

    def get_failure(self, key: str) -> FailureRecord | None:
        return self._read(f"failure:{key}", key, FailureRecord)

    def put_failure(self, key: str, failure: FailureRecord) -> None:
        self._db.set(f"failure:{key}", _Sealed.seal(key, failure.model_copy(update={"at": failure.at or time.time()})))

    # Notes: the key material last built for a (target, step), for --explain. Not results.
    def get_note(self, name: str) -> dict | None:
        try:
            note = json.loads(self._db.get(f"note:{name}") or "null")
        except (*UNREADABLE, TypeError, ValueError):
            return None
        return note if isinstance(note, dict) else None

    def put_note(self, name: str, value: dict) -> None:
        self._db.set(f"note:{name}", canonical_json(value))

    def __len__(self) -> int:
        return len(self._db)

    def close(self) -> None:
        self._db.close()

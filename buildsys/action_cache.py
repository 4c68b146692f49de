"""The action cache: action key -> the small record of what the action produced (diskcache)."""
from __future__ import annotations

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


class ActionCache:
    def __init__(self, root: Path):
        # diskcache commits each set in one SQLite transaction: a record is whole or absent.
        self._db = diskcache.Cache(str(root / "ac"))

    def get(self, key: str) -> ActionResult | None:
        raw = self._db.get(key)
        return ActionResult.model_validate_json(raw) if raw is not None else None

    def put(self, key: str, result: ActionResult) -> None:
        self._db.set(key, result.model_dump_json())

    # Notes: the key material last built for a (target, step), for --explain. Not results.
    def get_note(self, name: str) -> dict | None:
        return self._db.get(("note", name))

    def put_note(self, name: str, value: dict) -> None:
        self._db.set(("note", name), value)

    def __len__(self) -> int:
        return len(self._db)

    def close(self) -> None:
        self._db.close()

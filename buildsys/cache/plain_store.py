"""diskcache stores that hold plain data only, and heal.

The action cache and the stat cache open through `open_store`: diskcache with a Disk that keeps
str, bytes, int and float. diskcache unpickles any row written in its pickle mode, however the
store was opened, so whoever could write the cache could run code in a plain no-op build; a
pickled row (key or value) is refused instead, and its reader counts it a miss.
"""
from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import diskcache


class PickleRefused(ValueError):
    """A row diskcache would unpickle: never read, whoever wrote it."""


class PlainDisk(diskcache.Disk):
    """Keys and values of str, bytes, int and float only, as diskcache stores them raw."""

    def put(self, key):
        if type(key) not in (str, bytes, int, float):
            raise TypeError(f"a cache key must be plain data, not {type(key).__name__}")
        return super().put(key)

    def get(self, key, raw):
        if not raw:
            raise PickleRefused("a pickled key")
        return super().get(key, raw)

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if not read and type(value) not in (str, bytes, int, float):
            raise TypeError(f"a cache value must be plain data, not {type(value).__name__}")
        return super().store(value, read, key)

    def fetch(self, mode, filename, value, read):
        if mode == diskcache.core.MODE_PICKLE:
            raise PickleRefused("a pickled value")
        return super().fetch(mode, filename, value, read)


# What reading a damaged row can raise: SQLite's errors, a refused pickle, a value file gone.
UNREADABLE = (sqlite3.DatabaseError, PickleRefused, OSError)


def open_store(directory: Path, what: str, warnings: list[str]) -> diskcache.Cache:
    """A plain-data diskcache store; one SQLite cannot read is moved aside and started afresh."""
    try:
        db = diskcache.Cache(str(directory), disk=PlainDisk)
        db.get("probe")  # a damaged file can open and fail only at its first read
        return db
    except sqlite3.DatabaseError as err:
        aside = directory.with_name(f"{directory.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        os.replace(directory, aside)
        warnings.append(f"the {what} {directory} could not be read ({err}); it was moved to {aside} and a new one "
                        "started: what it held is computed again")
        return diskcache.Cache(str(directory), disk=PlainDisk)



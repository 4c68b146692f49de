"""The cache directory: where it is, what each of its subfolders is called, and its stores opened
together. Nothing else names a subfolder; everything asks a Layout.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .action_cache import ActionCache
from .cas import CAS
from .stat import FileDigests

CACHE_ENV = "MODELBUILD_CACHE_DIR"


@dataclass(frozen=True)
class Layout:
    """The cache directory's parts, by name."""

    root: Path

    @property
    def ac(self) -> Path:  # action records (action_cache.py)
        return self.root / "ac"

    @property
    def cas(self) -> Path:  # blobs and trees by digest (cas.py)
        return self.root / "cas"

    @property
    def stat(self) -> Path:  # file digests by path and stat (stat.py)
        return self.root / "stat"

    @property
    def tmp(self) -> Path:  # actions' staging directories, while they run
        return self.root / "tmp"

    @property
    def locks(self) -> Path:  # one lock per action key, between builds sharing the cache
        return self.root / "locks"

    @property
    def logs(self) -> Path:  # the local workers' own logs
        return self.root / "logs"

    @property
    def outputs(self) -> Path:  # per out/ tree, what was placed there (out_tree)
        return self.root / "outputs"

    def exists(self) -> bool:
        """Whether anything was ever built with it."""
        return self.cas.is_dir()


def cache_dir(flag: str | None, workspace_root: Path | None) -> Path | None:
    """--cache-dir, else $MODELBUILD_CACHE_DIR, else the workspace's cache/ (None outside one)."""
    chosen = flag or os.environ.get(CACHE_ENV)
    if chosen:
        return Path(chosen).resolve()
    return workspace_root / "cache" if workspace_root is not None else None


class Stores:
    """The cache directory's stores, opened together and closed together."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.dir = root
        self.layout = Layout(root)
        self.digests = FileDigests(self.layout.stat)
        self.action_cache = ActionCache(self.layout.ac)
        self.cas = CAS(self.layout.cas)

    @property
    def warnings(self) -> list[str]:
        """What was wrong with a store and healed: for the build's summary."""
        return self.digests.warnings + self.action_cache.warnings

    def close(self) -> None:
        self.digests.close()
        self.action_cache.close()
        self.cas.close()

"""The cache directory: where it is and what each of its subfolders is called. Nothing else names a
subfolder; everything asks a Layout. Light on purpose: the no-op's fast path reads it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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
    def scan(self) -> Path:  # Python files' imports by path and stat (stat.py)
        return self.root / "scan"

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
    def failed_logs(self) -> Path:  # the last failure's log of each target and step, by name
        return self.root / "logs" / "failed"

    @property
    def outputs(self) -> Path:  # per out/ tree, what was placed there (out_tree)
        return self.root / "outputs"

    @property
    def stamps(self) -> Path:  # per command, what its last successful build read (cli/noop.py)
        return self.root / "stamps"

    def exists(self) -> bool:
        """Whether anything was ever built with it."""
        return self.cas.is_dir()


def cache_dir(flag: str | None, workspace_root: Path | None) -> Path | None:
    """--cache-dir, else $MODELBUILD_CACHE_DIR, else the workspace's cache/ (None outside one)."""
    chosen = flag or os.environ.get(CACHE_ENV)
    if chosen:
        return Path(chosen).resolve()
    return workspace_root / "cache" if workspace_root is not None else None

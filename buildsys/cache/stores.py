"""The cache directory's stores, opened together and closed together (layout.py says where)."""
from __future__ import annotations

from pathlib import Path

from .action_cache import ActionCache
from .cas import CAS
from .layout import Layout
from .stat import FileDigests, ImportScan


class Stores:
    """The cache directory's stores, opened together and closed together."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.dir = root
        self.layout = Layout(root)
        self.digests = FileDigests(self.layout.stat)
        self.scan = ImportScan(self.layout.scan)
        self.action_cache = ActionCache(self.layout.ac)
        self.cas = CAS(self.layout.cas)

    @property
    def warnings(self) -> list[str]:
        """What was wrong with a store and healed: for the build's summary."""
        return self.digests.warnings + self.scan.warnings + self.action_cache.warnings

    def close(self) -> None:
        self.digests.close()
        self.scan.close()
        self.action_cache.close()
        self.cas.close()

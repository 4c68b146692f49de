"""The out/ tree: each target's artifact at out/<package>/<name><ext>, never anywhere else."""
from __future__ import annotations

from pathlib import Path

from .action_cache import OutputRecord
from . import scratch
from .cas import CAS
from .digests import FileDigests
from .labels import Label


class OutTree:
    def __init__(self, root: Path, cas: CAS, digests: FileDigests):
        self.root = root
        self.cas = cas
        self.digests = digests
        self._swept: set[Path] = set()

    def path(self, label: Label, ext: str) -> Path:
        path = (self.root / label.package / f"{label.name}{ext}").resolve()
        if not path.is_relative_to(self.root.resolve()):  # labels cannot hold "..", but be sure
            raise ValueError(f"{label} would be written outside out/: {path}")
        return path

    def current_digest(self, path: Path, is_tree: bool) -> str | None:
        if is_tree:
            return CAS.tree_digest(path, self.digests.digest) if path.is_dir() else None
        return self.digests.digest(path) if path.is_file() else None

    def place(self, label: Label, ext: str, record: OutputRecord) -> tuple[Path, bool]:
        """Materialize the artifact unless out/ already holds exactly it. Returns (path, written)."""
        path = self.path(label, ext)
        if path.parent not in self._swept:  # what a killed build was writing here
            scratch.sweep(path.parent)
            self._swept.add(path.parent)
        if self.current_digest(path, record.is_tree) == record.digest:
            return path, False
        self.cas.materialize(record.digest, record.is_tree, path)
        return path, True

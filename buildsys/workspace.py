"""The workspace: its root (marked by WORKSPACE.models) and its packages."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

MARKER = "WORKSPACE.models"
BUILD_FILE = "BUILD.models"
# modelbuild's own trees and tool directories are never packages.
_SKIP_AT_ROOT = {"out", "cache"}
_SKIP_ANYWHERE = {"__pycache__", "node_modules"}


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def find(cls, start: Path | None = None) -> "Workspace":
        here = (start or Path.cwd()).resolve()
        for directory in (here, *here.parents):
            if (directory / MARKER).is_file():
                return cls(directory)
        raise UserError(
            f"no {MARKER} found in {here} or any parent directory; "
            f"the workspace root is the directory holding a (possibly empty) {MARKER} file"
        )

    def packages(self) -> list[str]:
        """Every directory holding a BUILD.models, as workspace-relative paths, sorted."""
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel.replace(os.sep, "/")
            dirnames[:] = sorted(
                d
                for d in dirnames
                if not d.startswith(".")
                and d not in _SKIP_ANYWHERE
                and not (rel == "" and d in _SKIP_AT_ROOT)
                and not os.path.exists(os.path.join(dirpath, d, "pyvenv.cfg"))  # a virtualenv
                and not os.path.exists(os.path.join(dirpath, d, MARKER))  # a workspace of its own
            )
            if BUILD_FILE in filenames:
                found.append(rel)
        return sorted(found)

    def package_dir(self, package: str) -> Path:
        return self.root / package if package else self.root

    def build_file(self, package: str) -> Path:
        return self.package_dir(package) / BUILD_FILE

    def rel(self, path: Path) -> str:
        return os.path.relpath(path, self.root).replace(os.sep, "/")

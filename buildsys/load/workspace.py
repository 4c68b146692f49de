"""The workspace: its root (marked by WORKSPACE.models) and its packages."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

MARKER = "WORKSPACE.models"
BUILD_FILE = "BUILD.models"
# modelbuild's own trees and tool directories are never packages.
_SKIP_AT_ROOT = {"out", "cache"}
_SKIP_ANYWHERE = {"__pycache__", "node_modules"}


def walked(parent: str, name: str, at_root: bool) -> bool:
    """Whether packages are looked for in this directory."""
    path = os.path.join(parent, name)
    return not (
        name.startswith(".")
        or name in _SKIP_ANYWHERE
        or (at_root and name in _SKIP_AT_ROOT)
        or os.path.exists(os.path.join(path, "pyvenv.cfg"))  # a virtualenv
        or os.path.exists(os.path.join(path, MARKER))  # a workspace of its own
    )


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
        """Every directory holding a BUILD.models, as workspace-relative paths, sorted.

        Symlinked directories are not followed (a link to an ancestor would loop, and a package's
        files must be in the workspace), but one with a BUILD.models in it is an error, not skipped."""
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel.replace(os.sep, "/")
            dirnames[:] = sorted(d for d in dirnames if walked(dirpath, d, rel == ""))
            for d in dirnames:
                if os.path.islink(os.path.join(dirpath, d)):
                    self._refuse_linked_packages(os.path.join(dirpath, d))
            if BUILD_FILE in filenames:
                found.append(rel)
        return sorted(found)

    def _refuse_linked_packages(self, link: str) -> None:
        """A symlinked directory holding a BUILD.models (at any depth) is an error, never skipped."""
        for dirpath, dirnames, filenames in os.walk(link):  # the link itself is entered, links in it are not
            if BUILD_FILE in filenames:
                build = self.rel(Path(dirpath) / BUILD_FILE)
                raise UserError(
                    f"this package is under {self.rel(Path(link))}/, a symlink to {os.path.realpath(link)}; a package "
                    f"must be a real directory of the workspace: replace the link with the directory itself",
                    build,
                )
            dirnames[:] = [d for d in dirnames if walked(dirpath, d, False)]

    def package_dir(self, package: str) -> Path:
        return self.root / package if package else self.root

    def build_file(self, package: str) -> Path:
        return self.package_dir(package) / BUILD_FILE

    def rel(self, path: Path) -> str:
        return os.path.relpath(path, self.root).replace(os.sep, "/")

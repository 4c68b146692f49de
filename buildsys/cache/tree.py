"""A directory as the cache and the executors see it: its files (relative path, executable bit)
and its sub-directories, since an empty one can matter (an .mlpackage without weights). The CAS
stores a tree as a manifest of this shape; Ray and its transport send trees in it too."""
from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Callable, TypeVar

from ..digests import canonical_json

T = TypeVar("T")


def walk(src: Path, of_file: Callable[[Path], T]) -> tuple[list[tuple[str, T, bool]], list[str]]:
    """(sorted [(relative path, of_file(path), executable)], sorted relative directories)."""
    files, dirs = [], []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src).as_posix()
        if path.is_dir():
            dirs.append(rel)
        elif path.is_file():
            files.append((rel, of_file(path), bool(path.stat().st_mode & stat.S_IXUSR)))
    return files, dirs


def manifest(files: list[tuple[str, str, bool]], dirs: list[str]) -> bytes:
    """Canonical JSON of a tree whose files are named by digest: the same tree, the same bytes."""
    return canonical_json({"tree": [list(f) for f in files], "dirs": list(dirs)}).encode()


def read_manifest(data: bytes) -> tuple[list[tuple[str, str, bool]], list[str]]:
    parsed = json.loads(data)
    return [(p, d, bool(x)) for p, d, x in parsed["tree"]], list(parsed["dirs"])

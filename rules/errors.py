"""Errors a step raises for the user to read, and how a model's own exception is shown."""
from __future__ import annotations

import functools
import os
import sys
import sysconfig
import traceback
from pathlib import Path


class StepError(Exception):
    """A message for the user, shown as is: no traceback, and the log is not dumped."""


@functools.cache
def _not_user_dirs() -> tuple[str, ...]:
    """Directories whose code is never the user's, whatever directory holds them: the standard
    library, installed packages, the virtualenv, and modelbuild's own engine and rules."""
    from buildsys import (
        rule_api,  # the engine: rules depend on it, so it is importable wherever rules are
    )

    dirs = {str(Path(__file__).parent), str(Path(rule_api.__file__).parent)}
    for base in ({}, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
        paths = sysconfig.get_paths(vars=base)
        dirs |= {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    if sys.prefix != sys.base_prefix:  # a virtualenv: everything in it is tooling
        dirs.add(sys.prefix)
    both = dirs | {os.path.realpath(d) for d in dirs}
    return tuple(d.rstrip("/") + "/" for d in both)


def _installed(path: str) -> bool:
    parts = path.split("/")
    return "site-packages" in parts or "dist-packages" in parts or path.startswith(_not_user_dirs())


def user_file(filename: str, workspace: Path) -> str | None:
    """The file's workspace-relative path if it is the user's code, else None. Python does not
    resolve symlinks in code paths, so both the path as imported and the real path are checked."""
    if not os.path.isabs(filename):  # "<string>", "<frozen importlib._bootstrap>": no file of anyone's
        return None
    for path in (filename, os.path.realpath(filename)):
        if _installed(path):
            return None
    for root in {str(workspace), os.path.realpath(workspace)}:
        root = root.rstrip("/") + "/"
        for path in (filename, os.path.realpath(filename)):
            if path.startswith(root):
                return path[len(root):]
    return None


def user_frames(exc: BaseException, workspace: Path) -> str:
    """The traceback frames that are the user's code (see user_file), paths made relative."""
    frames = []
    seen = set()
    while exc is not None and id(exc) not in seen:  # follow the cause chain: export wraps errors
        seen.add(id(exc))
        mine = []
        for frame in traceback.extract_tb(exc.__traceback__):
            rel = user_file(frame.filename, workspace)
            if rel is not None:
                frame.filename = rel
                mine.append(frame)
        if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:  # the line that does not parse has no frame
            rel = user_file(exc.filename, workspace)
            if rel is not None:
                mine.append(traceback.FrameSummary(rel, exc.lineno, "<module>", line=(exc.text or "").strip()))
        frames = mine + frames
        exc = exc.__cause__ or exc.__context__
    if not frames:
        return ""
    return "In your code (most recent call last):\n" + "".join(traceback.format_list(frames)).rstrip()

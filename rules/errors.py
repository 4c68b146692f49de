"""Errors a step raises for the user to read, and how a model's own exception is shown."""
from __future__ import annotations

import traceback
from pathlib import Path


class StepError(Exception):
    """A message for the user, shown as is: no traceback, and the log is not dumped."""


def user_frames(exc: BaseException, workspace: Path) -> str:
    """The traceback frames that are the user's code (under the workspace), paths made relative."""
    root = str(workspace).rstrip("/") + "/"
    frames = []
    seen = set()
    while exc is not None and id(exc) not in seen:  # follow the cause chain: export wraps errors
        seen.add(id(exc))
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(root)] + frames
        exc = exc.__cause__ or exc.__context__
    if not frames:
        return ""
    for f in frames:
        f.filename = f.filename[len(root):]
    return "Traceback (your code):\n" + "".join(traceback.format_list(frames)).rstrip()

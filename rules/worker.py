"""The worker loop: import the toolchain once, then run the actions the engine sends.

Each action's stdout and stderr, at the file-descriptor level (C++ libraries write there
directly), go to the action's own log. Objects produced or loaded here are kept in memory by
digest, so the next step of a chain does not re-load them from disk.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import sys
import time
import traceback
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

from .errors import StepError

_MEMO_SIZE = 8


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class StepContext:
    """What a step's run() sees: its config, input files, output dir, and the memo."""

    def __init__(self, request: dict, workspace: Path, memo: OrderedDict):
        self.request = request
        self.config = request["config"]
        self.label = request["label"]
        self.workspace = workspace
        self.out_dir = Path(request["out_dir"])
        self._memo = memo
        self._kept: dict[str, object] = {}

    def input_path(self, name: str) -> Path:
        return Path(self.request["inputs"][name]["path"])

    def load(self, name: str, loader):
        """The object in input `name`, from memory if this worker produced or loaded it before."""
        spec = self.request["inputs"][name]
        digest = spec["digest"]
        if digest in self._memo:
            self._memo.move_to_end(digest)
            return self._memo[digest]
        obj = loader(spec["path"])
        self._remember(digest, obj)
        return obj

    def output_path(self, name: str) -> Path:
        if name not in self.request["outputs"]:
            raise KeyError(f"step declared outputs {self.request['outputs']}, not {name!r}")
        return self.out_dir / name

    def keep(self, name: str, obj) -> None:
        """Keep an output's object in memory for the steps that consume it."""
        self._kept[name] = obj

    def _remember(self, digest: str, obj) -> None:
        self._memo[digest] = obj
        while len(self._memo) > _MEMO_SIZE:
            self._memo.popitem(last=False)

    def commit_memo(self) -> list[str]:
        digests = []
        for name, obj in self._kept.items():
            path = self.output_path(name)
            if path.is_file():
                digest = _digest(path)
                self._remember(digest, obj)
                digests.append(digest)
        return digests


@contextmanager
def _captured(log_path: str):
    """Send fd 1 and fd 2 to the log for the duration, then restore them."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _user_error(exc: BaseException, workspace: Path) -> str:
    """A model's own exception: only the frames of the user's code, then the error."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(str(workspace))]
    lines = [f"{type(exc).__name__}: {exc}"]
    if frames:
        shown = "".join(traceback.format_list(frames))
        lines.insert(0, "Traceback (user code only; full traceback in the log):\n" + shown.rstrip())
    return "\n".join(lines)


def run_one(request: dict, workspace: Path, memo: OrderedDict) -> dict:
    ctx = StepContext(request, workspace, memo)
    started = time.monotonic()
    with _captured(request["log"]):
        try:
            module = importlib.import_module(request["module"])
            metrics = module.run(ctx) or {}
        except StepError as err:
            traceback.print_exc()
            return {"ok": False, "error": str(err)}
        except Exception as err:
            traceback.print_exc()
            return {"ok": False, "error": _user_error(err, workspace)}
    return {"ok": True, "metrics": metrics, "memo": ctx.commit_memo(), "seconds": time.monotonic() - started}


def _preload() -> None:
    """Pay the toolchain's import cost once per worker, not once per action."""
    import torch  # noqa: F401
    import executorch.exir  # noqa: F401


def serve(conn, workspace: str) -> None:
    root = Path(workspace)
    sys.path.insert(0, str(root))
    os.environ.setdefault("TQDM_DISABLE", "1")
    _preload()
    memo: OrderedDict = OrderedDict()
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(run_one(request, root, memo))

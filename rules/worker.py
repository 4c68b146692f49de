"""The worker loop: import the toolchain once, then run the actions the engine sends.

Each action's stdout and stderr, at the file-descriptor level (C++ libraries write there
directly), go to the action's own log.

Every step reads its inputs from their files, never from objects an earlier step left in
memory: lowering can change an ExportedProgram in place (a shape guard added to its shared
ShapeEnv caps a conv model's dynamic batch at 15), so a result must not depend on which
worker ran what before it.
"""
from __future__ import annotations

import errno
import importlib
import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

from buildsys.rule_api import FileInput, SourcesInput, StepReply, StepRequest

from . import RULESET
from .errors import StepError, user_frames
from .lib.programs import expect_inputs
from .toolchain_errors import explain


class StepContext:
    """What a step's run() sees: its config (validated against its step kind's config type), input
    files and output directory."""

    def __init__(self, request: StepRequest, workspace: Path):
        self.request = request
        self.config: BaseModel = RULESET.steps[request.step].config.model_validate(request.config)
        self.warnings: list[str] = []
        self.label = request.label
        self.workspace = workspace
        self.out_dir = Path(request.out_dir)

    def input_path(self, name: str) -> Path:
        value = self.request.inputs[name]
        assert isinstance(value, FileInput), f"input {name!r} is workspace sources, not a file"
        return Path(value.path)

    def source_paths(self, name: str) -> list[Path]:
        """The files of a sources input, where this worker sees them."""
        value = self.request.inputs[name]
        assert isinstance(value, SourcesInput), f"input {name!r} is a file, not workspace sources"
        return [self.workspace / f.path for f in value.sources]

    def warn(self, text: str) -> None:
        """Tell the user something, though the step succeeded (shown in the build's summary and by show)."""
        self.warnings.append(text)

    def output_path(self, name: str) -> Path:
        if name not in self.request.outputs:
            raise KeyError(f"step declared outputs {self.request.outputs}, not {name!r}")
        return self.out_dir / name


@contextmanager
def captured(log_path: str):
    """Send fd 1 and fd 2 to the log for the duration, then restore them (C++ logs too: the runtime's)."""
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


def _log_text(path: str, limit: int = 1 << 20) -> str:
    """The end of an action's log so far (what the toolchain logged before it raised)."""
    sys.stdout.flush()
    sys.stderr.flush()
    with open(path, "rb") as log:
        log.seek(0, os.SEEK_END)
        log.seek(max(0, log.tell() - limit))
        return log.read().decode(errors="replace")


_ENVIRONMENTAL_ERRNOS = {errno.ENOSPC, errno.ENOMEM, errno.EDQUOT, errno.EIO, errno.EMFILE, errno.ENFILE}


def _environmental(err: BaseException | None) -> bool:
    """Out of memory, disk or file handles, here or in what caused it (steps wrap errors): a failure
    another run with the same inputs may not have."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, MemoryError) or (isinstance(err, OSError) and err.errno in _ENVIRONMENTAL_ERRNOS):
            return True
        err = err.__cause__ or err.__context__
    return False


def run(request: StepRequest, workspace: Path) -> StepReply:
    """Run one action: its step's module's run(ctx), with its output captured into its log."""
    ctx = StepContext(request, workspace)
    expect_inputs(request.inputs)  # programs load only from bytes matching their record's digest
    with captured(request.log):
        try:
            module = importlib.import_module(request.module)
            metrics = module.run(ctx) or {}
        except StepError as err:
            traceback.print_exc()
            return StepReply(ok=False, error=str(err), show_log=False, transient=_environmental(err))
        except Exception as err:
            traceback.print_exc()
            if _environmental(err):  # the machine, not the inputs: the engine must not replay it
                return StepReply(ok=False, error=f"{type(err).__name__}: {err}", transient=True)
            # A model's own exception shows its frames; a toolchain failure is explained, and its
            # traceback stays in the log (the engine prints the log's path).
            frames = user_frames(err, workspace)
            if frames:
                return StepReply(ok=False, error=f"{frames}\n{type(err).__name__}: {err}", show_log=False)
            return StepReply(ok=False, error=explain(request.step, err, workspace, _log_text(request.log)), show_log=False)
    return StepReply(ok=True, metrics=metrics, warnings=ctx.warnings)


def preload() -> None:
    """Pay the toolchain's import cost once per worker, not once per action."""
    # Every worker starts from the same state, whatever it runs first: a result must not
    # depend on which worker ran it (these also register ops and kernels globally). A light
    # worker (StepKind.light) skips this; a light step makes the same bytes in both kinds of
    # worker (tests/steps/test_light_steps.py).
    os.environ.setdefault("TQDM_DISABLE", "1")
    for module in RULESET.worker_imports:  # torch, executorch.exir, its quantized kernels
        importlib.import_module(module)

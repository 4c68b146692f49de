"""What crosses the process boundary between the engine and a worker: one request, one reply.

Both are pydantic models, sent as JSON-ready dicts (`to_wire`) and validated on arrival, so a
local worker, a Ray actor and a test all speak the same checked shape.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SourceFile(BaseModel):
    """A workspace file the step reads: its workspace-relative path and content digest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    digest: str


class SourcesInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[SourceFile]


class FileInput(BaseModel):
    """An earlier action's output (or metrics, as JSON): a local file or directory, and its digest."""

    model_config = ConfigDict(extra="forbid")

    path: str
    digest: str
    is_tree: bool = False


class StepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str  # the action's id
    step: str  # its step kind, e.g. "export"
    module: str  # the step's module, e.g. "rules.steps.export"
    label: str  # the target that owns it
    config: dict
    inputs: dict[str, SourcesInput | FileInput]
    outputs: list[str]
    out_dir: str  # where the step writes each output, by name
    log: str  # the file its stdout and stderr go to

    def to_wire(self) -> dict:
        return self.model_dump(mode="json")


class StepReply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ok: bool
    metrics: dict = {}
    warnings: list[str] = []  # what the step wants its user to know, though it succeeded
    error: str | None = None
    show_log: bool = True  # the log is worth showing (a toolchain failure, not a step's own message)
    transient: bool = False  # the machine failed, not the inputs: never recorded as their failure
    crashed: bool = False  # the worker itself died (crash, OOM kill, lost node)
    seconds: float = 0.0  # how long the step itself ran: set by the worker loop around run(), not by the step

    def to_wire(self) -> dict:
        return self.model_dump(mode="json")

    @classmethod
    def died(cls, why: str) -> "StepReply":
        return cls(ok=False, error=why, transient=True, crashed=True)

"""Where actions run: the scheduler hands an executor requests and collects replies (as ninja's
CommandRunner). It never sees a process, an actor or a socket.

The local worker pool is one executor (local.py), Ray is another (ray.py), and
the scheduler's tests use an in-process one. An executor reports a worker that died as a reply
(`StepReply.died`), never as an exception: that fails the action only.
"""
from __future__ import annotations

from typing import Protocol

from ..rule_api.wire import StepReply, StepRequest


class Executor(Protocol):
    def free(self) -> int:
        """How many more requests it can start now."""

    def starts_now(self, step: str) -> bool:
        """Whether an action of this step would start at once, not wait for its worker to get ready
        (a full local worker while its fork server still imports). Of the actions the scheduler can
        start, it starts these first."""

    def submit(self, request: StepRequest) -> str | None:
        """Start running it; its outputs land in request.out_dir, its log in request.log. Returns the
        worker it went to, by a name of the executor's (a row of the build's --profile), or None."""

    def running(self) -> int:
        """How many submitted requests have not been collected yet."""

    def wait(self, timeout: float | None) -> list[tuple[str, StepReply]]:
        """Block until at least one request finishes (or the timeout passes): (action id, reply) each."""

    def warm(self, wanted: int) -> None:
        """Get up to `wanted` more workers ready now (their toolchain imports overlap running work)."""

    def shutdown(self) -> None:
        """Stop every worker; a request still running is abandoned (the build was interrupted)."""

"""An in-process executor for the scheduler's own tests: steps are Python functions, no worker
process, no toolchain. It keeps the Executor contract (replies come back from wait(), never
from submit()), so the scheduler runs exactly as it does with real workers."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from buildsys.rule_api import FileInput, StepReply, StepRequest

Step = Callable[[StepRequest], StepReply]


def read_input(request: StepRequest, name: str) -> str:
    value = request.inputs[name]
    assert isinstance(value, FileInput), name
    return Path(value.path).read_text()


def upper(request: StepRequest) -> StepReply:
    """out = the input (or the config's text) in upper case: a step whose output can stay the same."""
    text = read_input(request, "src") if "src" in request.inputs else request.config.get("text", "")
    Path(request.out_dir, "out").write_text(text.upper() + request.config.get("suffix", ""))
    Path(request.log).write_text(f"upper {request.label}\n")
    return StepReply(ok=True, metrics={"chars": len(text)})


def fail(request: StepRequest) -> StepReply:
    Path(request.log).write_text("about to fail\n")
    return StepReply(ok=False, error=f"{request.label}: it failed", show_log=False)


def crash(request: StepRequest) -> StepReply:
    return StepReply.died("worker process 1234 died (exit status -9)")


def no_output(request: StepRequest) -> StepReply:
    return StepReply(ok=True)


class FakeExecutor:
    def __init__(self, steps: dict[str, Step], jobs: int = 2):
        self.steps = steps
        self.jobs = jobs
        self.done: list[tuple[str, StepReply]] = []
        self.ran: list[str] = []  # labels, in the order they were submitted
        self.most_at_once = 0
        self.stopped = False

    def starts_now(self, step: str) -> bool:
        return True

    def free(self) -> int:
        return self.jobs - len(self.done)

    def running(self) -> int:
        return len(self.done)

    def submit(self, request: StepRequest) -> None:
        assert len(self.done) < self.jobs, "submitted beyond free()"
        self.ran.append(request.label)
        behaviour = self.steps[request.config.get("behaviour", request.step)]
        self.done.append((request.action, behaviour(request)))
        self.most_at_once = max(self.most_at_once, len(self.done))

    def wait(self, timeout: float | None) -> list[tuple[str, StepReply]]:
        first, self.done = self.done[:1], self.done[1:]  # one at a time: others finish later
        return first

    def warm(self, wanted: int) -> None:
        pass

    def shutdown(self) -> None:
        self.stopped = True

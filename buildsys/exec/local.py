"""The local executor: long-lived worker processes on this machine (workers.py), one action each at a time."""
from __future__ import annotations

from multiprocessing.connection import wait
from pathlib import Path

from ..rule_api.wire import StepReply, StepRequest
from .pool import WorkerDied, WorkerPool


class LocalExecutor:
    def __init__(self, jobs: int, entry: str, workspace: Path, log_dir: Path, imports: tuple[str, ...] = (),
                 light_imports: tuple[str, ...] = (), light_steps: frozenset[str] = frozenset()):
        self.pool = WorkerPool(jobs, entry, workspace, log_dir, imports, light_imports)
        self.light_steps = light_steps

    def free(self) -> int:
        return len(self.pool.idle())

    def starts_now(self, step: str) -> bool:
        return step in self.light_steps or self.pool.full_ready()

    def running(self) -> int:
        return len(self.pool.busy())

    def submit(self, request: StepRequest) -> str:
        worker = self.pool.take(request.step in self.light_steps)
        worker.busy = request.action
        worker.send(request.to_wire())
        return f"worker {worker.index}"

    def wait(self, timeout: float | None) -> list[tuple[str, StepReply]]:
        busy = self.pool.busy()
        if not busy:
            return []
        ready = wait([w.conn for w in busy], timeout=timeout)
        done = []
        for worker in busy:
            if worker.conn not in ready:
                continue
            aid = worker.busy
            try:
                reply = StepReply.model_validate(worker.receive())
            except WorkerDied as died:  # says nothing about the inputs: never recorded as their failure
                self.pool.discard(worker)
                reply = StepReply.died(str(died))
            worker.busy = None
            done.append((aid, reply))
        return done

    def warm(self, wanted: int) -> None:
        self.pool.warm(wanted)

    def shutdown(self) -> None:
        self.pool.shutdown()

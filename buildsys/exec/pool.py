"""Long-lived worker processes: each has the toolchain imported once and runs many actions.

Workers are forked from a server process that imported the rule set's worker modules
(RuleSet.worker_imports: torch, executorch) and the planned steps' warm-ups (StepKind.warm_up) once,
so a second worker costs a fork, not another interpreter importing it all again. A light worker, for
the light steps (export), is forked from a first server that imports torch alone, so it starts
while the rest imports (fork_servers.py). The servers start with the first worker and end with
the engine.

A worker that dies mid-action (crash, OOM kill, SIGKILL) fails that action only; the pool
starts a fresh process for the next one. A worker dies with the engine, however the engine dies:
the server leaves when the engine's end of its pipe closes, and a worker is killed when its parent,
the server, goes (worker_main).
"""
from __future__ import annotations

import multiprocessing
import socket
import threading
from multiprocessing.connection import Connection
from pathlib import Path

from . import fork_servers, worker_main
from .fork_servers import Server


class WorkerDied(Exception):
    pass


class Worker:
    def __init__(self, index: int, entry: str, workspace: Path, log_path: Path, server: Server | None = None):
        self.index = index
        parent, child = socket.socketpair()
        self.conn = Connection(parent.detach())
        self.busy: str | None = None  # id of the action it is running
        self.process: multiprocessing.process.BaseProcess | None = None
        self._started = threading.Event()
        self._error = ""
        # The servers from this (the engine's main) thread (server_guard); the worker from another: the
        # first start waits for the server's imports, and the engine has other things to do meanwhile
        # (a request sent now waits in the socket).
        server = server or fork_servers.start(entry, (), ())[1]
        self.light = server.light  # it runs light steps only
        threading.Thread(target=self._start, args=(server, child, entry, workspace, log_path),
                         name=f"start-worker-{index}", daemon=True).start()

    def _start(self, server: Server, child: socket.socket, entry: str, workspace: Path, log_path: Path) -> None:
        try:
            process = server.process_type(target=worker_main.forked, name=f"worker-{self.index}",
                                          args=(child, entry, str(workspace), str(log_path), server.pid, not server.light))
            process.start()
            self.process = process
        except Exception as err:  # noqa: BLE001 (any failure to start is this worker's death, said when the engine reads EOF)
            self._error = f"{type(err).__name__}: {err}"
        finally:
            child.close()  # the worker holds its own copy; without one, the engine reads EOF: it died
            self._started.set()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        """Started, and not dead."""
        return self._started.is_set() and self.process is not None and self.process.exitcode is None

    def alive(self) -> bool:
        return not self._started.is_set() or (self.process is not None and self.process.exitcode is None)

    def send(self, request: dict) -> None:
        self.conn.send(request)

    def receive(self) -> dict:
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            self._started.wait()
            if self.process is None:
                raise WorkerDied(f"a worker process could not be started: {self._error}") from None
            self.process.join()
            raise WorkerDied(f"worker process {self.pid} died (exit status {self.process.exitcode})") from None

    def kill(self) -> None:
        """Kill it now (an interrupted build): one still starting is killed as soon as it has started."""
        self._started.wait()
        if self.process is not None and self.process.exitcode is None:
            self.process.kill()

    def stop(self, grace: float = 5.0) -> None:
        """Close the connection (the worker exits when it reads EOF); kill it after `grace` s. One still
        starting is not waited for: it reads EOF as soon as it runs."""
        try:
            self.conn.close()
        finally:
            if self.process is not None:
                self.process.join(grace)
                if self.process.exitcode is None:
                    self.process.kill()
                    self.process.join()


class WorkerPool:
    def __init__(self, size: int, entry: str, workspace: Path, log_dir: Path, imports: tuple[str, ...] = (),
                 light_imports: tuple[str, ...] = ()):
        self.size = size
        self.entry = entry
        self.imports = imports
        self.light_imports = light_imports
        self.workspace = workspace
        self.log_dir = log_dir
        self.workers: list[Worker | None] = [None] * size
        self._servers: tuple[Server, Server] | None = None  # (light, full), started with the first worker

    def idle(self) -> list[int]:
        return [i for i, w in enumerate(self.workers) if w is None or w.busy is None]

    def take(self, light: bool) -> Worker:
        """An idle worker for a step. A light step runs in any worker that is running (its result is
        the same in both kinds: tests/steps/test_light_steps.py), the others in a full one. Else a
        free slot gets a new worker of the kind the step needs, replacing an idle one of the other."""
        idle = [i for i in self.idle() if self.workers[i] is not None and self.workers[i].alive()]
        if light:  # and not waiting on the full server
            fits = [i for i in idle if self.workers[i].light or self.workers[i].running() or not self.light_imports]
        else:
            fits = [i for i in idle if not self.workers[i].light]
        if fits:
            return self.workers[fits[0]]
        slots = [i for i in self.idle() if i not in idle] + idle  # empty (or dead) slots first
        worker = self.workers[slots[0]]
        if worker is not None:
            self.discard(worker, kill=True)  # idle: nothing to lose
        return self.get(slots[0], light)

    def full_ready(self) -> bool:
        """Whether a full worker starts at once: its server has imported (or one is idle)."""
        return self._servers is not None and self._servers[1].ready()

    def get(self, index: int, light: bool = False) -> Worker:
        worker = self.workers[index]
        if worker is None or not worker.alive():
            self.log_dir.mkdir(parents=True, exist_ok=True)
            if self._servers is None:
                self._servers = fork_servers.start(self.entry, self.imports, self.light_imports)
            worker = Worker(index, self.entry, self.workspace, self.log_dir / f"worker-{index}.log",
                            self._servers[0 if light else 1])
            self.workers[index] = worker
        return worker

    def warm(self, wanted: int) -> None:
        """Start up to `wanted` more workers now, so their toolchain import overlaps the running
        action instead of delaying the actions that become ready after it. They are light ones,
        which start first; the full server is importing meanwhile."""
        for index, worker in enumerate(self.workers):
            if wanted <= 0:
                return
            if worker is None:
                self.get(index, light=True)
                wanted -= 1

    def busy(self) -> list[Worker]:
        return [w for w in self.workers if w is not None and w.busy is not None]

    def discard(self, worker: Worker, kill: bool = False) -> None:
        """Forget a dead (or idle, killed) worker; the next get() starts a new one."""
        try:
            if kill:
                worker.kill()
            worker.stop()
        finally:
            self.workers[worker.index] = None

    def shutdown(self) -> None:
        # Idle workers hold nothing worth waiting for (one may still be importing the toolchain
        # after warm()); busy ones only exist when the build is interrupted.
        for worker in self.workers:
            if worker is not None:
                if worker.busy is not None:
                    worker.kill()
                worker.stop(grace=0.5)
        self.workers = [None] * self.size
        self._servers = None
        fork_servers.stop()

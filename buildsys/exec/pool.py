"""Long-lived worker processes: each has the toolchain imported once and runs many actions.

Workers are forked from one server process (multiprocessing's forkserver) that imported the rule
set's worker modules (RuleSet.worker_imports: torch, executorch) and the planned steps' warm-ups
(StepKind.warm_up) once, so a second worker costs a fork, not another interpreter importing it all
again. The server starts with the first worker and ends with the engine.

A worker that dies mid-action (crash, OOM kill, SIGKILL) fails that action only; the pool
starts a fresh process for the next one. A worker dies with the engine, however the engine dies:
the server leaves when the engine's end of its pipe closes, and a worker is killed when its parent,
the server, goes (worker_main).
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import threading
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from pathlib import Path

from . import worker_main


class WorkerDied(Exception):
    pass


_SERVER_LOCK = threading.Lock()


def _server(entry: str, imports: tuple[str, ...]) -> tuple[ForkServerContext, int]:
    """The fork server's context, and its pid; started (once per engine) with the runner and its imports loaded."""
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    with _SERVER_LOCK:
        context.set_forkserver_preload(["buildsys.exec.server_guard", entry, *imports])  # before it starts only
        forkserver.ensure_running()
        return context, forkserver._forkserver._forkserver_pid


def stop_server() -> None:
    """Stop the fork server, if one runs, and reap it: a build leaves no process behind, and the CPU
    time of its workers (which the server reaped) counts as the engine's children's, as it did when
    the engine started them itself. It is killed, not asked to leave: it has nothing to finish (it may
    even be importing still), and an interpreter with the toolchain loaded takes 0.5-1 s to exit,
    which every build that ran an action would wait for at its end."""
    from multiprocessing import forkserver, resource_tracker

    server = forkserver._forkserver
    with _SERVER_LOCK:
        if server._forkserver_pid is not None:
            os.kill(server._forkserver_pid, signal.SIGKILL)
        server._stop()  # closes its pipe and reaps it (what CPython's own tests call); a no-op when none runs
        # multiprocessing started a resource tracker for the workers (they use none): reaped the same way.
        resource_tracker._resource_tracker._stop()


class Worker:
    def __init__(self, index: int, entry: str, workspace: Path, log_path: Path, imports: tuple[str, ...] = ()):
        self.index = index
        parent, child = socket.socketpair()
        self.conn = Connection(parent.detach())
        self.busy: str | None = None  # id of the action it is running
        self.process: multiprocessing.process.BaseProcess | None = None
        self._started = threading.Event()
        self._error = ""
        # The server from this (the engine's main) thread (server_guard); the worker from another: the
        # first start waits for the server's imports, and the engine has other things to do meanwhile
        # (a request sent now waits in the socket).
        server = _server(entry, imports)
        threading.Thread(target=self._start, args=(server, child, entry, workspace, log_path),
                         name=f"start-worker-{index}", daemon=True).start()

    def _start(self, server: tuple[ForkServerContext, int], child: socket.socket, entry: str, workspace: Path,
               log_path: Path) -> None:
        try:
            context, server_pid = server
            process = context.Process(target=worker_main.forked, name=f"worker-{self.index}",
                                      args=(child, entry, str(workspace), str(log_path), server_pid))
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
    def __init__(self, size: int, entry: str, workspace: Path, log_dir: Path, imports: tuple[str, ...] = ()):
        self.size = size
        self.entry = entry
        self.imports = imports
        self.workspace = workspace
        self.log_dir = log_dir
        self.workers: list[Worker | None] = [None] * size

    def idle(self) -> list[int]:
        return [i for i, w in enumerate(self.workers) if w is None or w.busy is None]

    def get(self, index: int) -> Worker:
        worker = self.workers[index]
        if worker is None or not worker.alive():
            self.log_dir.mkdir(parents=True, exist_ok=True)
            worker = Worker(index, self.entry, self.workspace, self.log_dir / f"worker-{index}.log", self.imports)
            self.workers[index] = worker
        return worker

    def warm(self, wanted: int) -> None:
        """Start up to `wanted` more workers now, so their toolchain import overlaps the running
        action instead of delaying the actions that become ready after it."""
        for index, worker in enumerate(self.workers):
            if wanted <= 0:
                return
            if worker is None:
                self.get(index)
                wanted -= 1

    def busy(self) -> list[Worker]:
        return [w for w in self.workers if w is not None and w.busy is not None]

    def discard(self, worker: Worker) -> None:
        """Forget a dead worker; the next get() starts a new one."""
        try:
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
        stop_server()

"""Long-lived worker processes: each imports the toolchain once and runs many actions.

A worker that dies mid-action (crash, OOM kill, SIGKILL) fails that action only; the pool
starts a fresh process for the next one. A worker dies with the engine, however the engine dies
(worker_main), so workers must be started from the engine's main thread: Linux's parent-death
signal fires when the thread that started the process ends.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path


class WorkerDied(Exception):
    pass


class Worker:
    def __init__(self, index: int, entry: str, workspace: Path, log_path: Path):
        self.index = index
        parent, child = socket.socketpair()
        self._log = open(log_path, "ab")
        env = dict(os.environ, TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "buildsys.exec.worker_main", str(child.fileno()), entry, str(workspace),
             str(os.getpid())],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env=env,
            # A Ctrl-C in the terminal reaches the engine, which stops workers; the worker's session
            # holds its own subprocesses, which its guardian kills when it dies.
            start_new_session=True,
        )
        child.close()
        self.conn = Connection(parent.detach())
        self.busy: str | None = None  # id of the action it is running

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, request: dict) -> None:
        self.conn.send(request)

    def receive(self) -> dict:
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            code = self.process.wait()
            raise WorkerDied(f"worker process {self.pid} died (exit status {code})") from None

    def stop(self, grace: float = 5.0) -> None:
        """Close the connection (the worker exits when it reads EOF); kill it after `grace` s."""
        try:
            self.conn.close()
        finally:
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self._log.close()


class WorkerPool:
    def __init__(self, size: int, entry: str, workspace: Path, log_dir: Path):
        self.size = size
        self.entry = entry
        self.workspace = workspace
        self.log_dir = log_dir
        self.workers: list[Worker | None] = [None] * size

    def idle(self) -> list[int]:
        return [i for i, w in enumerate(self.workers) if w is None or w.busy is None]

    def get(self, index: int) -> Worker:
        worker = self.workers[index]
        if worker is None or worker.process.poll() is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            worker = Worker(index, self.entry, self.workspace, self.log_dir / f"worker-{index}.log")
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
                    worker.process.kill()
                worker.stop(grace=0.5)
        self.workers = [None] * self.size

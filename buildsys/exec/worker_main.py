"""A worker process, forked from the engine's fork server (`forked`, pool.py).

The runner module is the rule set's (RuleSet.worker): its preload() runs once, its
run(StepRequest, workspace) once per action.

The engine talks to a worker over a socket (FD), so the worker's own stdout and stderr stay
free to be captured into each action's log.

A worker never outlives the engine that started it, whatever kills the engine (SIGKILL, OOM):
it sits in its own session (so a terminal's Ctrl-C reaches only the engine), where nothing else
would stop it before the end of its action. Before anything else it asks the kernel for SIGKILL
when its parent dies, and forks a guardian that kills the worker's process group when the
worker dies, so the compilers and other subprocesses a step started go with it.
"""
from __future__ import annotations

import ctypes
import importlib
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

from buildsys.rule_api.wire import StepRequest

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def signal_on_parent_death(sig: int) -> bool:
    """Have the kernel send `sig` when this process's parent dies (Linux); False where it cannot."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _guard_process_group(engine_fd: int) -> None:
    """Fork a guardian that kills this process group as soon as the worker dies, however it dies.
    It is a separate process because a SIGKILLed worker runs no cleanup, and a thread could not
    run while the worker's main thread holds the GIL in C++ code."""
    worker = os.getpid()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # from fork to sigwait: not lost
    if os.fork():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        return
    try:
        os.close(engine_fd)  # the engine must read the worker's death as EOF at once
        if signal_on_parent_death(signal.SIGTERM):
            if os.getppid() == worker:  # else it is already gone
                signal.sigwait({signal.SIGTERM})
            os.killpg(worker, signal.SIGKILL)  # the worker's children, and this guardian last
    finally:
        os._exit(0)


def _watch_parent(parent: int) -> None:
    """Where the kernel cannot signal a parent's death: poll for it from a thread."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)  # with the subprocesses of its steps
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _die_with_parent(parent: int, engine_fd: int) -> None:
    if not signal_on_parent_death(signal.SIGKILL):
        _watch_parent(parent)
        return
    if os.getppid() != parent:  # it died before the signal was armed
        os._exit(1)
    if os.getpgrp() == os.getpid():  # only a group of its own is the worker's to kill
        _guard_process_group(engine_fd)


def serve(conn: Connection, runner: str, workspace: str, preload: bool = True) -> None:
    root = Path(workspace)
    sys.path.insert(0, str(root))
    module = importlib.import_module(runner)
    if preload:  # a light worker has what its steps need from its server, and must not import the rest
        module.preload()
    while True:
        try:
            request = StepRequest.model_validate(conn.recv())
        except (EOFError, OSError):
            return
        started = time.perf_counter()
        reply = module.run(request, root)
        reply.seconds = time.perf_counter() - started
        conn.send(reply.to_wire())


def forked(sock, runner: str, workspace: str, log_path: str, server: int, preload: bool = True) -> None:
    """A worker forked from the fork server (pool.py), whose imports it shares: its own session, its
    output to its log, dead when the server (its parent, which leaves with the engine) dies."""
    os.setsid()  # a terminal's Ctrl-C reaches only the engine
    # multiprocessing hands every child the engine's end of the server's pipe; held here, it would
    # keep the server alive after the engine died.
    from multiprocessing import forkserver

    if forkserver._forkserver._forkserver_alive_fd is not None:
        os.close(forkserver._forkserver._forkserver_alive_fd)
        forkserver._forkserver._forkserver_alive_fd = None
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((null, 0), (log, 1), (log, 2)):
        os.dup2(fd, target)
    os.close(log)
    os.close(null)
    for stream in (sys.stdout, sys.stderr):  # as PYTHONUNBUFFERED: a step's prints reach its log in order
        stream.reconfigure(line_buffering=True, write_through=True)
    os.environ.update(TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
    fd = sock.detach()
    _die_with_parent(server, fd)
    serve(Connection(fd), runner, workspace, preload)

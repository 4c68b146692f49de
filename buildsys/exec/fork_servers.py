"""The fork servers that local workers are forked from (pool.py), so that a worker costs a fork, not
an interpreter importing the toolchain again.

With light imports (RuleSet.light_imports: torch), there are two servers, chained:
- the first is multiprocessing's forkserver. It imports the light modules and forks workers for
  the light steps (StepKind.light: export) about 1 s in;
- the second is forked from the first and imports the rest (executorch, the planned steps'
  warm-ups: about 6 s more). Then it forks the workers for every other step.

So a cold build's exports run while the lowering toolchain is still importing, and torch is imported
once. Without light imports, the first server imports everything and is the only one.

Both start with the first worker and are killed at the end of the build, the second first: its
parent, the first, reaps it, so the CPU time of the workers it reaped counts as the engine's.
"""
from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import signal
import socket
import threading
from multiprocessing import connection, forkserver, popen_forkserver, process, resource_tracker, spawn, util
from multiprocessing.context import reduction, set_spawning_popen

from . import worker_main

_LOCK = threading.Lock()


class _Chained(forkserver.ForkServer):
    """A fork server that is a process forked from the first one, so it shares the first's imports.
    multiprocessing's protocol and main loop are reused; only the start differs."""

    def __init__(self):
        super().__init__()
        self.ready = threading.Event()  # started (or failed to)
        self.imported = threading.Event()  # and done importing: a worker forked now starts at once
        self.process: multiprocessing.process.BaseProcess | None = None
        self.error = ""

    def start(self, first: multiprocessing.context.ForkServerContext, imports: tuple[str, ...]) -> None:
        """Fork it from the first server (this waits for the first's imports: call it from a thread)."""
        try:
            with socket.socket(socket.AF_UNIX) as listener:
                address = connection.arbitrary_address("AF_UNIX")
                listener.bind(address)
                os.chmod(address, 0o600)
                listener.listen()
                # "alive": its end here closes when the engine goes; the server then leaves.
                alive, self._forkserver_alive_fd = (s.detach() for s in socket.socketpair())
                imported, imported_end = socket.socketpair()
                with socket.socket(fileno=alive) as alive_end, imported_end:
                    server = first.Process(target=_serve, name="fork-server-2",
                                           args=(listener, alive_end, imported_end, list(imports),
                                                 forkserver._forkserver._forkserver_pid))
                    server.start()
            self._forkserver_address, self._forkserver_pid, self.process = address, server.pid, server
        except Exception as err:  # noqa: BLE001 (said by every worker that needed it)
            self.error = f"{type(err).__name__}: {err}"
            imported = None
        finally:
            self.ready.set()
        if imported is not None:
            with imported:
                imported.recv(1)  # a byte when it is done, or its end closing as it dies
        self.imported.set()

    def ensure_running(self) -> None:  # what connect_to_new_process() calls first
        self.ready.wait()
        if self.process is None:
            raise RuntimeError(f"the fork server for the toolchain could not be started: {self.error}")

    def stop(self) -> None:
        self.ready.wait()
        if self.process is not None:
            self.process.kill()
            self.process.join()  # the first server reaps it, its workers already reaped
            with contextlib.suppress(OSError):
                os.unlink(self._forkserver_address)
        if self._forkserver_alive_fd is not None:
            os.close(self._forkserver_alive_fd)


def _serve(listener: socket.socket, alive: socket.socket, imported: socket.socket, imports: list[str],
           parent: int) -> None:
    """The second server's process: import the rest, say so, then serve forks as the first does."""
    os.setsid()  # a terminal's Ctrl-C reaches only the engine
    # Dead with the first server (Linux); everywhere, it leaves when the engine's "alive" end closes.
    if worker_main.signal_on_parent_death(signal.SIGKILL) and os.getppid() != parent:
        os._exit(1)  # the first died before the signal was armed
    # Held here, the first server's "alive" end would keep it alive after the engine died.
    if forkserver._forkserver._forkserver_alive_fd is not None:
        os.close(forkserver._forkserver._forkserver_alive_fd)
        forkserver._forkserver._forkserver_alive_fd = None
    for module in imports:
        try:
            __import__(module)
        except ImportError:  # as multiprocessing's preload: the worker's own import then says why
            pass
    imported.send(b"1")
    imported.close()
    forkserver.main(listener.detach(), alive.detach(), [])


_second: _Chained | None = None


class _Popen(popen_forkserver.Popen):
    """multiprocessing's forkserver start, asking the second server (CPython 3.11's _launch, with
    the server it connects to made a parameter)."""

    def _launch(self, process_obj):
        prep_data = spawn.get_preparation_data(process_obj._name)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        self.sentinel, w = _second.connect_to_new_process(self._fds)
        _parent_w = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class SecondServerProcess(process.BaseProcess):
    _start_method = "forkserver"

    @staticmethod
    def _Popen(process_obj):
        return _Popen(process_obj)


class Server:
    """One server, as a worker sees it: how to start a process from it, and its pid (the worker
    dies with it)."""

    def __init__(self, light: bool, process_type, pid, ready=lambda: True):
        self.light = light
        self.process_type = process_type
        self._pid = pid
        self.ready = ready  # whether it has imported (else a process started from it waits)

    @property
    def pid(self) -> int:
        return self._pid()


def start(entry: str, imports: tuple[str, ...], light_imports: tuple[str, ...]) -> tuple[Server, Server]:
    """The (light, full) servers, started once per engine (from its main thread: server_guard):
    the same one twice without light imports."""
    global _second
    first = multiprocessing.get_context("forkserver")
    with _LOCK:
        first.set_forkserver_preload(["buildsys.exec.server_guard", entry, *(light_imports or imports)])  # before it starts only
        forkserver.ensure_running()
        full = Server(False, first.Process, lambda: forkserver._forkserver._forkserver_pid)
        if not light_imports:
            return full, full
        if _second is None:
            _second = _Chained()
            rest = tuple(m for m in imports if m not in light_imports)
            threading.Thread(target=_second.start, args=(first, rest), name="start-fork-server-2", daemon=True).start()
        second = _second
    return (Server(True, first.Process, lambda: forkserver._forkserver._forkserver_pid),
            Server(False, SecondServerProcess, lambda: (second.ensure_running(), second._forkserver_pid)[1],
                   second.imported.is_set))


def stop() -> None:
    """Kill the servers, if they run, and reap them: a build leaves no process behind, and the CPU
    time of its workers (which the servers reaped) counts as the engine's children's. They are
    killed, not asked to leave: they have nothing to finish (one may even be importing still), and
    an interpreter with the toolchain loaded takes 0.5-1 s to exit, which every build that ran an
    action would wait for at its end."""
    global _second
    server = forkserver._forkserver
    with _LOCK:
        if _second is not None:
            if not _second.ready.is_set() and server._forkserver_pid is not None:
                os.kill(server._forkserver_pid, signal.SIGKILL)  # not waiting for its imports: the start fails now
            _second.stop()
            _second = None
        if server._forkserver_pid is not None:
            os.kill(server._forkserver_pid, signal.SIGKILL)
        server._stop()  # closes its pipe and reaps it (what CPython's own tests call); a no-op when none runs
        # multiprocessing started a resource tracker for the workers (they use none): reaped the same way.
        resource_tracker._resource_tracker._stop()

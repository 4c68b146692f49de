"""Evaluate BUILD.models files (and the .star files they load), bounded, in a child process.

Starlark is hermetic, not bounded: `for i in range(1000000000)` runs for an hour, and printing a
value nested 200,000 deep overflows the Rust stack of the process that prints it (a segfault,
no message). So `buildsys.evaluator` evaluates in a child process under limits on loop steps,
time, call depth and memory, and whatever ends that process, the CLI reports it naming the file.
Each rule call keeps the file:line it was made at, through macros too.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

import starlark

from ..errors import UserError
from ..rule_api import RuleSet
from .evaluator import MAX_MEMORY, MAX_SECONDS, Channel, RawTarget
from .workspace import Workspace

__all__ = ["Loader", "RawTarget"]

_HARD_SECONDS = MAX_SECONDS + 15  # the parent's own deadline, for time spent inside one builtin call
_CHILD = "import sys; sys.path[:0] = sys.argv[2:]; from buildsys.load.evaluator import serve; serve(int(sys.argv[1]))"


class Loader:
    def __init__(self, workspace: Workspace, ruleset: RuleSet):
        self.workspace = workspace
        self.ruleset = ruleset
        self._child: _Child | None = _Child(workspace, ruleset)  # it starts up while packages are found

    def load_package(self, package: str) -> list[RawTarget]:
        if self._child is None:
            self._child = _Child(self.workspace, self.ruleset)
        name = self.workspace.rel(self.workspace.build_file(package))
        try:
            return self._child.load(package, name)
        except _Died as died:
            self._child = None  # the next package gets a fresh process
            raise died.error from None


class _Died(Exception):
    def __init__(self, error: UserError):
        self.error = error


class _Child:
    """The evaluator process and its connection; it exits when the connection closes."""

    def __init__(self, workspace: Workspace, ruleset: RuleSet):
        # The child's whole import path: the directories holding buildsys and starlark.
        paths = [str(Path(__file__).resolve().parents[2]), str(Path(starlark.__file__).resolve().parent.parent)]
        parent, child = socket.socketpair()
        self.stderr = tempfile.TemporaryFile()  # print() output and crash reports, relayed after each file
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _CHILD, str(child.fileno()), *paths],
            pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr,
            env=dict(os.environ, RUST_BACKTRACE="0"),
        )
        child.close()
        self.conn = Channel(parent)
        self.conn.send((str(workspace.root), list(ruleset.kinds), ruleset.prelude))
        self._relayed = 0
        weakref.finalize(self, _stop, self.conn, self.process, self.stderr)

    def load(self, package: str, build_file: str) -> list[RawTarget]:
        files = [build_file]  # the file being evaluated, and the files loading it
        deadline = time.monotonic() + _HARD_SECONDS
        try:
            self.conn.send(package)
            while True:
                if not self.conn.poll(max(0.0, deadline - time.monotonic())):
                    self.process.kill()
                    self.process.wait()
                    raise _Died(UserError(f"evaluation did not finish in {_HARD_SECONDS} s{_chain(files)}; "
                                          f"a builtin call on a huge value (such as 'x' * 1000000000) can do that",
                                          files[-1]))
                message = self.conn.recv()
                kind, *rest = message
                if kind == "enter":
                    files.append(rest[0])
                elif kind == "leave":
                    files.pop()
                elif kind == "ok":
                    return rest[0]
                else:
                    text, where = rest
                    raise UserError(text, where or build_file)
        except (EOFError, OSError):
            raise _Died(self._crash(files)) from None
        finally:
            self._relay()

    def _crash(self, files: list[str]) -> UserError:
        code = self.process.wait()
        self.stderr.seek(self._relayed)
        said = [l for l in self.stderr.read().decode(errors="replace").splitlines()
                if l.strip() and not l.startswith("note: ")]
        self._relayed = self.stderr.tell()
        reason = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        if any("memory allocation" in l for l in said) or code == -signal.SIGKILL:
            why = (f"it ran out of memory (the limit is {MAX_MEMORY >> 30} GiB): a value built in a loop "
                   f"(such as a string or list doubled each time) is too large")
        elif code > 0:
            why = "this is a fault of modelbuild's evaluator process, not of the file: please report it"
        else:
            why = ("most likely a value nested too deeply for starlark to print, compare or convert, such as "
                   "`x = [x]` repeated in a loop: keep values a few levels deep")
        detail = f" ({said[-1].strip()})" if said else ""
        return UserError(f"the Starlark interpreter crashed ({reason}){detail}{_chain(files)}; {why}", files[-1])

    def _relay(self) -> None:
        """Pass on what the evaluation printed (Starlark's print() writes to stderr)."""
        end = self.stderr.seek(0, 2)
        if end > self._relayed:
            self.stderr.seek(self._relayed)
            sys.stderr.write(self.stderr.read(end - self._relayed).decode(errors="replace"))
            sys.stderr.flush()
            self._relayed = end


def _chain(files: list[str]) -> str:
    return f" while evaluating {' loaded by '.join(reversed(files))}" if len(files) > 1 else " while evaluating it"


def _stop(conn: Channel, process: subprocess.Popen, stderr) -> None:
    conn.close()  # an idle evaluator exits at once; a busy one at its next loop step, or is killed
    try:
        process.wait(timeout=1)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    stderr.close()

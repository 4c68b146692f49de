"""The child process that evaluates BUILD.models and .star files with starlark-pyo3.

`loading.Loader` starts it as `python -I -S -c ...`: nothing in the workspace or the environment
can shadow starlark or buildsys. Starlark is hermetic but not bounded, so evaluation is: a loop
stops after MAX_LOOP_STEPS iterations or MAX_SECONDS (starlark's cancellation hook), the call
stack is capped, and the address space is limited. What no hook catches (the Rust stack
overflowing while it prints or converts a deeply nested value) ends this process, not the CLI.

Every file read is confined: a BUILD.models or a loaded .star file must resolve, symlinks
followed, inside the workspace, and be UTF-8.
"""
from __future__ import annotations

import os
import pickle
import re
import resource
import select
import signal
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import starlark as sl

from ..errors import Location, UserError
from ..labels import Label
from .workspace import BUILD_FILE, Workspace

# Limits on evaluating one BUILD.models and the files it loads.
MAX_LOOP_STEPS = 100_000_000  # loop iterations (about 3 s of a tight loop)
MAX_SECONDS = 30  # wall time, checked between loop iterations
MAX_CALL_DEPTH = 1000  # nested Starlark calls
MAX_MEMORY = 2 << 30  # address space of the evaluating process, bytes

_PRELUDE_FILE = "<prelude>"
_FRAME = re.compile(r"^\s*\* (.+?):(\d+), in ")
_SPAN = re.compile(r"^\s*--> (.+?):(\d+):(\d+)\s*$")
_STEPS_PER_CHECK = 1000  # starlark calls the cancellation hook once per ~1000 loop iterations
_UNCONVERTIBLE = re.compile(r"Operation `serde::serialize` not supported on type `(\w+)`")


@dataclass(frozen=True)
class RawTarget:
    """One rule call, before validation."""

    kind: str
    attrs: dict
    location: Location
    package: str


class Channel:
    """Pickled messages over a socket, each prefixed by its length (multiprocessing's Connection
    would cost the evaluator a tenth of a second to import)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def send(self, message) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self.sock.sendall(struct.pack("!Q", len(data)) + data)

    def poll(self, timeout: float) -> bool:
        return bool(select.select([self.sock], [], [], timeout)[0])

    def recv(self):
        (size,) = struct.unpack("!Q", self._exactly(8))
        return pickle.loads(self._exactly(size))

    def _exactly(self, size: int) -> bytes:
        chunks = []
        while size:
            chunk = self.sock.recv(min(size, 1 << 20))
            if not chunk:
                raise EOFError("the other end closed the connection")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self.sock.close()


def _location(stack: str) -> Location:
    frames = [(m.group(1), int(m.group(2))) for m in map(_FRAME.match, stack.splitlines()) if m]
    frames = [f for f in frames if f[0] != _PRELUDE_FILE]
    (file, line), *via = frames or [("<unknown>", 0)]
    return Location(file, line, tuple(f"{f}:{n}" for f, n in via))


def decode_source(data: bytes, name: str) -> str:
    """UTF-8 text, or an error naming the file, the byte offset and its line."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise UserError(
            f"not UTF-8 text: byte 0x{data[err.start]:02x} at offset {err.start} ({err.reason}); "
            f"BUILD.models and .star files must be UTF-8: re-save the file as UTF-8",
            f"{name}:{line}",
        ) from None


class Evaluator:
    def __init__(self, workspace: Workspace, kinds: list[str], prelude: str, conn: Channel | None = None):
        self.workspace = workspace
        self.root = workspace.root.resolve()
        self.conn = conn  # where to report each file evaluation starts, so a crash can name it
        self.globals = sl.Globals.extended_by(
            [sl.LibraryExtension.CallStack, sl.LibraryExtension.StructType, sl.LibraryExtension.Print]
        )
        rule_defs = "".join(f"def {kind}(**kwargs):\n    _declare({kind!r}, call_stack(), kwargs)\n\n" for kind in kinds)
        rule_defs += "def package(**kwargs):\n    _package(call_stack(), kwargs)\n\n"
        self.prelude = sl.parse(_PRELUDE_FILE, rule_defs + prelude)
        self._star_cache: dict[str, sl.FrozenModule] = {}
        self._loading: list[str] = []  # .star files being evaluated, to name a load cycle
        self._current: str | None = None  # package whose BUILD.models is being evaluated
        self._declared: list[RawTarget] = []
        self._default_visibility: list[str] | None = None  # from package(), for the package being evaluated
        self._raised: UserError | None = None  # the error a builtin raised, as starlark wraps it
        self._checks = 0
        self._deadline = 0.0
        self._stopped = ""  # why evaluation was cancelled
        self._parent = os.getppid()

    # ---- bounds ----
    def _options(self) -> sl.EvalOptions:
        return sl.EvalOptions(check_cancelled=self._cancel, max_callstack_size=MAX_CALL_DEPTH)

    def _cancel(self) -> bool:
        self._checks += 1
        if self._checks * _STEPS_PER_CHECK > MAX_LOOP_STEPS:
            self._stopped = (f"evaluation stopped after {MAX_LOOP_STEPS:,} loop iterations, the limit for one "
                             f"BUILD.models and the files it loads: make the loop bounded")
        elif time.monotonic() > self._deadline:
            self._stopped = (f"evaluation stopped after {MAX_SECONDS} s, the limit for one BUILD.models and "
                             f"the files it loads: make the loops shorter")
        elif os.getppid() != self._parent:
            self._stopped = "evaluation stopped: modelbuild exited"
        return bool(self._stopped)

    # ---- builtins: they act on the package being evaluated, even when called from a macro ----
    def _builtin(self, fn):
        def call(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except UserError as err:
                self._raised = err  # starlark re-raises it as text; keep the error itself
                raise

        return call

    def _declare(self, kind: str, stack: str, kwargs: dict) -> None:
        if self._current is None or self._loading:  # a .star file's top level runs once, for whoever loads it first
            raise UserError(f"{kind}() may only be called while a BUILD.models file is evaluated, not at load time")
        attrs = dict(kwargs)
        if self._default_visibility is not None and "visibility" not in attrs:
            attrs["visibility"] = list(self._default_visibility)
        self._declared.append(RawTarget(kind, attrs, _location(stack), self._current))

    def _package(self, stack: str, kwargs: dict) -> None:
        """package(default_visibility = [...]): settings for the targets of this BUILD.models that
        it declares after the call (so, as in Bazel, it comes first, once)."""
        where = _location(stack)
        if self._current is None or self._loading:
            raise UserError("package() may only be called in a BUILD.models file, not in a .star file", where)
        if self._declared or self._default_visibility is not None:
            raise UserError("package() must come once, before the first target of the BUILD.models file", where)
        unknown = sorted(set(kwargs) - {"default_visibility"})
        if unknown:
            raise UserError(f"package() got an unexpected argument '{unknown[0]}'; it takes: default_visibility", where)
        value = kwargs.get("default_visibility", [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UserError("package() default_visibility must be a list of strings such as \"//apps/...\"", where)
        self._default_visibility = list(value)

    def _package_name(self) -> str:
        return self._current or ""

    def _glob(self, include: list, exclude: list | None = None) -> list[str]:
        """Files of the current package matching `include` minus `exclude`; never crosses packages."""
        if self._current is None:
            raise UserError("glob() may only be called while a BUILD.models file is evaluated")
        base = self.workspace.package_dir(self._current)

        def expand(patterns: list) -> set[str]:
            hits: set[str] = set()
            for pattern in patterns:
                if not isinstance(pattern, str) or pattern.startswith("/") or ".." in pattern.split("/"):
                    raise UserError(f"glob() patterns are package-relative paths, got {pattern!r}")
                for path in base.glob(pattern):
                    if path.is_file() and not self._in_subpackage(base, path):
                        hits.add(path.relative_to(base).as_posix())
            return hits

        return sorted(expand(list(include)) - expand(list(exclude or [])))

    @staticmethod
    def _in_subpackage(base: Path, path: Path) -> bool:
        parent = path.parent
        while parent != base:
            if (parent / BUILD_FILE).is_file():
                return True
            parent = parent.parent
        return False

    def _module(self) -> sl.Module:
        module = sl.Module()
        module.add_callable("_declare", self._builtin(self._declare))
        module.add_callable("glob", self._builtin(self._glob))
        module.add_callable("_package", self._builtin(self._package))
        module.add_callable("package_name", self._package_name)
        sl.eval(module, self.prelude, self.globals)
        return module

    # ---- files ----
    def _source(self, path: Path, key: str) -> str:
        """The file's text: it must resolve inside the workspace (a symlink is followed) and be UTF-8."""
        real = path.resolve()
        if not real.is_relative_to(self.root):
            raise UserError(f"{key} is a symlink to {real}, outside the workspace; BUILD.models and .star files "
                            f"must be inside the workspace: copy the file in instead of linking to it")
        try:
            data = path.read_bytes()
        except OSError as err:
            raise UserError(f"{key} cannot be read: {err.strerror}") from None
        return decode_source(data, key)

    def _tell(self, *message) -> None:
        """Tell the parent which file is being evaluated: if this process dies, it names that file."""
        if self.conn is not None:
            self.conn.send(message)

    def _file_loader(self, from_package: str) -> sl.FileLoader:
        def load(module_id: str) -> sl.FrozenModule:
            try:
                label = Label.parse(module_id, from_package)
                if not label.name.endswith(".star"):
                    raise UserError(f"load() takes a .star file label such as '//pkg:defs.star', got '{module_id}'")
                return self._load_star(label)
            except UserError as err:
                self._raised = self._raised or err
                raise

        return sl.FileLoader(load)

    def _load_star(self, label: Label) -> sl.FrozenModule:
        path = self.workspace.package_dir(label.package) / label.name
        key = self.workspace.rel(path)
        if key in self._star_cache:
            return self._star_cache[key]
        if key in self._loading:
            cycle = " -> ".join(self._loading[self._loading.index(key):] + [key])
            raise UserError(f"load() cycle: {cycle}")
        if not path.is_file():
            raise UserError(f"load(): no file {key} for label '{label}'")
        source = self._source(path, key)
        self._loading.append(key)
        self._tell("enter", key)
        try:
            module = self._module()
            sl.eval_with(self._options(), module, sl.parse(key, source), self.globals, self._file_loader(label.package))
            frozen = module.freeze()
        except sl.StarlarkError as err:
            raise self._error(err, key) from None
        finally:
            self._loading.pop()
            self._tell("leave", key)
        self._star_cache[key] = frozen
        return frozen

    def load_package(self, package: str) -> list[RawTarget]:
        path = self.workspace.build_file(package)
        name = self.workspace.rel(path)
        self._current, self._declared, self._raised, self._default_visibility = package, [], None, None
        self._checks, self._stopped, self._deadline = 0, "", time.monotonic() + MAX_SECONDS
        try:
            module = self._module()
            sl.eval_with(self._options(), module, sl.parse(name, self._source(path, name)), self.globals,
                         self._file_loader(package))
        except sl.StarlarkError as err:
            raise self._error(err, name) from None
        finally:
            self._current = None
        return self._declared

    # ---- errors ----
    def _error(self, err: sl.StarlarkError, file: str) -> UserError:
        """One UserError from starlark's text: the builtin's own error if one raised it, the limit
        that stopped evaluation, or starlark's message; placed at the user's outermost frame."""
        where, message, snippet = _parse(str(err))
        raised, self._raised = self._raised, None
        if raised is not None and raised.where is not None:
            self._raised = raised  # an error in a loaded file: keep its own place, up to the top
            return raised
        if raised is not None:
            message, snippet = raised.message, ""
        elif self._stopped:
            message = self._stopped
        elif _UNCONVERTIBLE.search(message):
            kind = _UNCONVERTIBLE.search(message).group(1)
            message = (f"a {kind} cannot be a rule's field value: fields take strings, numbers, booleans, None, "
                       f"lists, dicts and what the prelude's helpers (tensor(), dim(), ...) return")
            snippet = ""
        found = UserError(message + (f"\n{snippet}" if snippet else ""), where or file)
        self._raised = found
        return found


def _parse(text: str) -> tuple[str | None, str, str]:
    """(where, message, source snippet) from a StarlarkError's text."""
    lines = text.strip().splitlines()
    frames = [(m.group(1), int(m.group(2))) for m in map(_FRAME.match, lines) if m and m.group(1) != _PRELUDE_FILE]
    spans = [(i, m) for i, m in ((i, _SPAN.match(l)) for i, l in enumerate(lines)) if m]
    error = next((l for l in lines if l.startswith("error: ")), lines[-1] if lines else "")
    message = re.sub(r"^(error: |StarlarkError: )+", "", error)
    user_spans = [(i, m) for i, m in spans if m.group(1) != _PRELUDE_FILE]
    snippet = ""
    if user_spans:
        i = user_spans[0][0] + 1
        block = []
        while i < len(lines) and lines[i].strip() and not _SPAN.match(lines[i]):
            block.append(lines[i])
            i += 1
        snippet = "\n".join(block).rstrip()
    span = user_spans[0][1] if user_spans else None
    if not frames:
        return (f"{span.group(1)}:{span.group(2)}:{span.group(3)}" if span else None), message, snippet
    (file, line), *inner = frames
    via = [f"{f}:{n}" for f, n in inner]
    if span and (span.group(1), int(span.group(2))) != frames[-1]:  # the line inside the innermost call
        via.append(f"{span.group(1)}:{span.group(2)}:{span.group(3)}")
    return f"{file}:{line}" + (f" (via {', '.join(via)})" if via else ""), message, snippet


def _limit_memory() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = MAX_MEMORY if hard == resource.RLIM_INFINITY else min(MAX_MEMORY, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def serve(fd: int) -> None:
    """Answer ("load", package) requests until the parent closes the connection."""
    conn = Channel(socket.socket(fileno=fd))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the CLI's to handle; it closes the connection
    _limit_memory()
    root, kinds, prelude = conn.recv()
    evaluator = Evaluator(Workspace(Path(root)), kinds, prelude, conn)
    while True:
        try:
            package = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply = ("ok", evaluator.load_package(package))
        except UserError as err:
            reply = ("error", err.message, err.where)
        except MemoryError:
            reply = ("error", f"evaluation needed more than {MAX_MEMORY >> 30} GiB of memory", None)
        try:
            conn.send(reply)
        except RecursionError:  # pickling a declaration nested thousands deep
            conn.send(("error", "a rule's field value is nested too deeply (thousands of levels)", None))

"""Evaluate BUILD.models files (and the .star files they load) with starlark-pyo3.

Each rule function in the prelude hands its keyword arguments and Starlark's call stack to
`_declare`, so every declaration keeps the file:line it was made at, through macros too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import starlark as sl

from .errors import Location, UserError
from .labels import Label
from .ruleset import RuleSet
from .workspace import BUILD_FILE, Workspace

_PRELUDE_FILE = "<prelude>"
_FRAME = re.compile(r"^\s*\* (.+?):(\d+), in ")


@dataclass(frozen=True)
class RawTarget:
    """One rule call, before validation."""

    kind: str
    attrs: dict
    location: Location
    package: str


def _location(stack: str) -> Location:
    frames = [(m.group(1), int(m.group(2))) for m in map(_FRAME.match, stack.splitlines()) if m]
    frames = [f for f in frames if f[0] != _PRELUDE_FILE]
    (file, line), *via = frames or [("<unknown>", 0)]
    return Location(file, line, tuple(f"{f}:{n}" for f, n in via))


class Loader:
    def __init__(self, workspace: Workspace, ruleset: RuleSet):
        self.workspace = workspace
        self.globals = sl.Globals.extended_by(
            [sl.LibraryExtension.CallStack, sl.LibraryExtension.StructType, sl.LibraryExtension.Print]
        )
        rule_defs = "".join(
            f"def {kind}(**kwargs):\n    _declare({kind!r}, call_stack(), kwargs)\n\n" for kind in ruleset.kinds
        )
        self.prelude = sl.parse(_PRELUDE_FILE, rule_defs + ruleset.prelude)
        self._star_cache: dict[str, sl.FrozenModule] = {}
        self._loading: list[str] = []  # .star files being evaluated, to name a load cycle
        self._current: str | None = None  # package whose BUILD.models is being evaluated
        self._declared: list[RawTarget] = []

    # Builtins. They act on the package being evaluated, even when called from a macro.
    def _declare(self, kind: str, stack: str, kwargs: dict) -> None:
        if self._current is None:
            raise UserError(f"{kind}() may only be called while a BUILD.models file is evaluated, not at load time")
        self._declared.append(RawTarget(kind, dict(kwargs), _location(stack), self._current))

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
        module.add_callable("_declare", self._declare)
        module.add_callable("glob", self._glob)
        module.add_callable("package_name", self._package_name)
        sl.eval(module, self.prelude, self.globals)
        return module

    def _file_loader(self, from_package: str) -> sl.FileLoader:
        def load(module_id: str) -> sl.FrozenModule:
            label = Label.parse(module_id, from_package)
            if not label.name.endswith(".star"):
                raise UserError(f"load() takes a .star file label such as '//pkg:defs.star', got '{module_id}'")
            return self._load_star(label)

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
        self._loading.append(key)
        try:
            module = self._module()
            ast = sl.parse(key, path.read_text())
            sl.eval(module, ast, self.globals, self._file_loader(label.package))
            frozen = module.freeze()
        finally:
            self._loading.pop()
        self._star_cache[key] = frozen
        return frozen

    def load_package(self, package: str) -> list[RawTarget]:
        path = self.workspace.build_file(package)
        name = self.workspace.rel(path)
        self._current, self._declared = package, []
        try:
            module = self._module()
            sl.eval(module, sl.parse(name, path.read_text()), self.globals, self._file_loader(package))
        except sl.StarlarkError as err:
            raise UserError(str(err).strip()) from None
        finally:
            self._current = None
        return self._declared

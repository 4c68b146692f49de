"""Which first-party Python files a module depends on, found by scanning imports with `ast`.

As Pants does: no code is run. Every module reachable through `import` / `from ... import`
that resolves to a file under `root` (and whose top-level package is allowed) is included,
with the `__init__.py` of each enclosing package, since importing a module runs those too.
"""
from __future__ import annotations

import ast
import functools
from collections.abc import Callable
from pathlib import Path

from ..errors import UserError


def module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path: Path, module: str) -> frozenset[str]:
    st = path.stat()
    return _parse_imports(str(path), module, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4096)
def _parse_imports(file: str, module: str, mtime_ns: int, size: int) -> frozenset[str]:
    """Parsed once per file version: many models import the same shared modules."""
    path = Path(file)
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as err:
        raise UserError(f"syntax error in {path.name}: {err.msg}", f"{path}:{err.lineno}") from None
    is_pkg = path.name == "__init__.py"
    package_parts = module.split(".") if is_pkg else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package_parts[: len(package_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base:
                names.add(base)
            # `from pkg import name` may import the submodule pkg.name
            names.update(f"{base}.{alias.name}" if base else alias.name for alias in node.names)
    return frozenset(names)


UNKNOWN = "*"  # what defined_names() holds when a module's names cannot be known without running it


def defined_names(path: Path, module: str = "") -> frozenset[str]:
    """The names a module binds at its top level (functions, classes, assignments, imports,
    including under a top-level if/try/with/for), read without running it; {UNKNOWN} when they
    cannot be known that way (a star import, a module __getattr__, a `global` or globals())."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError:
        return frozenset({UNKNOWN})  # the import scan says where
    if any(isinstance(n, ast.Global) or (isinstance(n, ast.Name) and n.id == "globals") for n in ast.walk(tree)):
        return frozenset({UNKNOWN})
    names: set[str] = set()
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return frozenset({UNKNOWN})
                names.add(alias.asname or alias.name.split(".")[0])
            continue
        # What the statement binds itself (an assignment, a walrus, a for or with target, an except name)...
        simple = not hasattr(node, "body")  # nothing nested in it defines a function's locals
        heads = [node] if simple else [getattr(node, f) for f in ("target", "items", "name") if getattr(node, f, None)]
        for head in heads:
            for part in head if isinstance(head, list) else [head]:
                if isinstance(part, str):  # except ... as name
                    names.add(part)
                    continue
                names.update(n.id for n in ast.walk(part) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
        # ...and what its blocks at the top level bind (if/try/with/for), not what a function's does.
        for field in ("body", "orelse", "finalbody", "handlers"):
            pending.extend(getattr(node, field, []))
    return frozenset({UNKNOWN}) if "__getattr__" in names else frozenset(names)


Scan = Callable[[Path, str], frozenset[str]]  # (file, its module name) -> the names it imports


def python_closure(
    root: Path, module: str, allowed_tops: set[str] | None = None, packages: bool = True,
    scan: Scan = imported_names,
) -> list[Path]:
    """The files of `module` and of every first-party module it imports, sorted.

    packages=False leaves out package `__init__.py` files: for rule code, whose package init is
    the registry of every rule, so that editing one rule does not change the digest of all.
    """
    root = root.resolve()
    found: dict[str, Path] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        if allowed_tops is not None and parts[0] not in allowed_tops:
            continue
        # The module itself and every enclosing package's __init__.py.
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in found:
                continue
            path = module_file(root, prefix)
            if path is None or (not packages and path.name == "__init__.py"):
                continue
            found[prefix] = path
            pending.extend(scan(path, prefix))
    return sorted(set(found.values()))

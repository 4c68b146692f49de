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

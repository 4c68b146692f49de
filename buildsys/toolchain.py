"""Toolchain identity for action keys, read from package metadata, never by importing."""
from __future__ import annotations

import functools
import importlib.metadata
import platform
import sys


@functools.lru_cache(maxsize=None)
def version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def toolchain(distributions: tuple[str, ...]) -> dict[str, str | None]:
    """Python, platform and the versions of the given distributions."""
    ident: dict[str, str | None] = {
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
    }
    ident.update({d: version(d) for d in distributions})
    return ident

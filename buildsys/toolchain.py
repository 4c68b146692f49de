"""Toolchain identity for action keys, read from package metadata, never by importing."""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import platform
import sys
import sysconfig


@functools.lru_cache(maxsize=None)
def version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=None)
def cpu() -> str:
    """The CPU model and its feature flags, for steps that emit -march=native code."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    flags = " ".join(sorted(fields.get("flags\t\t", "").split()))
    model = fields.get("model name\t", "").strip()
    return f"{model} | {hashlib.sha256(flags.encode()).hexdigest()[:16]} | {sysconfig.get_config_var('CC')}"


def toolchain(distributions: tuple[str, ...], host_bound: bool = False) -> dict[str, str | None]:
    """Python, platform and the versions of the given distributions (and the CPU, if asked)."""
    ident: dict[str, str | None] = {
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
    }
    ident.update({d: version(d) for d in distributions})
    if host_bound:
        ident["cpu"] = cpu()
    return ident

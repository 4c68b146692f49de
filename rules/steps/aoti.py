"""Step `aoti`: compile an exported program (.pt2) with AOTInductor into a package (.pt2).

By default the package holds C++ source, compile flags and the weights as an object file, not a
built library (`aot_inductor.package_cpp_only`). `torch._inductor.aoti_load_package` builds it
with g++ on first load. `compile = True` builds the .so now. Either way the result is tied to
this host: the flags say `-march=native` and name the CPU's vector ISA, and they hold the absolute
include and library paths of this Python and torch.

Reproducibility: inductor writes its cache directory's path into the package (compile and link
commands appended to the sources as comments, `__FILE__` strings and line tables in the .so),
and it appends those comments again each time a warm cache compiles the same graph. So each
compile gets a fresh cache at a path fixed by the input's content, under /tmp rather than
$TMPDIR (which differs between users, CI jobs and sandboxes). Precompiled headers are off: they
live in $TMPDIR/torchinductor_<user>, and their path would land in the comments. With that,
both kinds of package are byte-identical across processes, directories, users and TMPDIR on one
host and venv. Not across hosts: `-march=native` compiles for this CPU (and the flags name its
vector ISA), the flags hold the absolute include and library paths of this Python and torch, and
the .so records the compiler's version.
"""
from __future__ import annotations

from contextlib import contextmanager

from ..lib.programs import load_program
from ..values import Spec


class AotiConfig(Spec):
    compile: bool = False  # False: a source package; True: also build the .so for this host's CPU


SHARED_ROOT = "/tmp/modelbuild-aoti"


def _cache_root():
    """Where compiles happen: /tmp/modelbuild-aoti, one path for every build on this host,
    world-writable and sticky as /tmp is, so that every user can compile there. Where that
    cannot be had: a directory of this user's under $TMPDIR (the package then depends on both)."""
    import os
    import tempfile
    from pathlib import Path

    root = Path(SHARED_ROOT)
    try:
        root.mkdir(exist_ok=True)
        if root.stat().st_uid == os.getuid():
            root.chmod(0o1777)
        if os.access(root, os.W_OK | os.X_OK):
            return root
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"modelbuild-aoti-{os.getuid()}"


def _cache_dir(program: bytes, cfg: AotiConfig):
    """A fixed directory per (program, config): its path ends up in the package's bytes."""
    import hashlib

    digest = hashlib.sha256(program + cfg.model_dump_json().encode()).hexdigest()[:16]
    return _cache_root() / digest


@contextmanager
def _locked(cache):
    """Hold the lock of a cache directory: another build may compile the same program now."""
    import fcntl
    import os

    fd = os.open(cache.with_suffix(".lock"), os.O_RDONLY | os.O_CREAT, 0o444)  # others lock it too
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _package_summary(path) -> dict:
    import json
    import zipfile

    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        meta = next((n for n in names if n.endswith("wrapper_metadata.json")), None)
        isa = json.loads(zf.read(meta)).get("AOTI_CPU_ISA") if meta else None
        so_bytes = sum(zf.getinfo(n).file_size for n in names if n.endswith(".so"))
    return {"cpu_isa": isa, "so_bytes": so_bytes, "files": len(names)}


def run(ctx) -> dict:
    import shutil

    import torch
    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir

    from ..errors import StepError

    cfg: AotiConfig = ctx.config
    src = ctx.input_path("program")
    ep = load_program(src)
    if ep.example_inputs is None:
        raise StepError("AOTInductor needs the program's example inputs, and this .pt2 has none")
    out = ctx.output_path("model.pt2")
    cache = _cache_dir(src.read_bytes(), cfg)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with _locked(cache):
        shutil.rmtree(cache, ignore_errors=True)
        try:
            # Ours alone: the path is predictable, so a directory someone else left here is not used.
            cache.mkdir(mode=0o700)
        except FileExistsError:
            raise StepError(f"{cache} belongs to another user and cannot be removed; remove it and build again")
        try:
            with temporary_cache_dir(str(cache)):
                torch._inductor.aoti_compile_and_package(
                    ep,
                    package_path=str(out),
                    inductor_configs={
                        "aot_inductor.package_cpp_only": not cfg.compile,
                        "aot_inductor.precompile_headers": False,  # their path is per user and TMPDIR
                    },
                )
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    return {"compiled": cfg.compile, "bytes": out.stat().st_size, **_package_summary(out)}

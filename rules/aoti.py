"""Step `aoti`: compile an exported program (.pt2) with AOTInductor into a package (.pt2).

By default the package holds C++ source, compile flags and the weights as an object file, not a
built library (`aot_inductor.package_cpp_only`). `torch._inductor.aoti_load_package` builds it
with g++ on first load. `compile = True` builds the .so now. Either way the result is tied to
this host: the flags say `-march=native` and name the CPU's vector ISA, and they hold the absolute
include and library paths of this Python and torch.

Reproducibility: inductor writes its cache directory's path into the generated code (compile
commands appended as comments, the kernel file's name, the .so's debug info), and it appends
those comments again each time a warm cache compiles the same graph. So each compile gets a
fresh cache at a path fixed by the input's content. With that, both kinds of package come out
byte-identical across processes on the same machine and venv.
"""
from __future__ import annotations

from .programs import load_program
from .specs import Spec


class AotiConfig(Spec):
    compile: bool = False  # False: a source package; True: also build the .so for this host's CPU


def _cache_dir(program: bytes, cfg: AotiConfig):
    """A fixed directory per (program, config): its path ends up in the package's bytes."""
    import hashlib
    import tempfile
    from pathlib import Path

    digest = hashlib.sha256(program + cfg.model_dump_json().encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "modelbuild-aoti" / digest


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
    import fcntl
    import shutil

    import torch
    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir

    from .errors import StepError

    cfg = AotiConfig.model_validate(ctx.config)
    src = ctx.input_path("program")
    ep = load_program(src)
    if ep.example_inputs is None:
        raise StepError("AOTInductor needs the program's example inputs, and this .pt2 has none")
    out = ctx.output_path("model.pt2")
    cache = _cache_dir(src.read_bytes(), cfg)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another build may compile the same program now
        shutil.rmtree(cache, ignore_errors=True)
        try:
            with temporary_cache_dir(str(cache)):
                torch._inductor.aoti_compile_and_package(
                    ep,
                    package_path=str(out),
                    inductor_configs={"aot_inductor.package_cpp_only": not cfg.compile},
                )
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    return {"compiled": cfg.compile, "bytes": out.stat().st_size, **_package_summary(out)}

"""A runner module for the Ray executor's tests (the rule set's runner without the toolchain):
steps that copy their inputs to their outputs, sleep, or kill their own process."""
from __future__ import annotations

import importlib
import json
import os
import resource
import shutil
import signal
import sys
import time
from pathlib import Path

from buildsys.rule_api import SourcesInput, StepReply, StepRequest


def preload() -> None:
    pass


def run(request: StepRequest, workspace: Path) -> StepReply:
    with open(request.log, "a") as log:
        log.write(f"{request.step} in pid {os.getpid()}\n")
    out = Path(request.out_dir)
    if request.step == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if request.step == "sleep":
        started = time.time()
        time.sleep(request.config["seconds"])
        return StepReply(ok=True, metrics={"pid": os.getpid(), "started": started, "ended": time.time()})
    if request.step == "fail":
        return StepReply(ok=False, error=f"failed reading {request.inputs['blob'].path} into {out}", show_log=False)
    # "copy": every input to an output of the same name; sources as {path: text}
    sources = {}
    for name, value in request.inputs.items():
        if isinstance(value, SourcesInput):
            sources.update({f.path: (workspace / f.path).read_text() for f in value.sources})
        elif value.is_tree:
            shutil.copytree(value.path, out / name, copy_function=shutil.copy)
        else:
            shutil.copy(value.path, out / name)
    (out / "sources.json").write_text(json.dumps(sources, sort_keys=True))
    module = request.config.get("import")
    return StepReply(ok=True, metrics={
        "pid": os.getpid(), "node": ray.get_runtime_context().get_node_id() if (ray := sys.modules.get("ray")) else None,
        "workspace": str(workspace),
        "module_file": importlib.import_module(module).__file__ if module else None,
        "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # the actor's peak so far (bytes)
    })

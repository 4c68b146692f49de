"""Step `budget`: an artifact's size against the max_size its target declares (a check: the artifact
is placed in out/ only if it fits). A language model's budget counts its .pte and its .ptd."""
from __future__ import annotations

import json
from pathlib import Path

from buildsys.rule_api import human_bytes

from ..values import Spec


class BudgetConfig(Spec):
    max_bytes: int
    declared: str  # as written in BUILD.models, e.g. "2MB"


def size_on_disk(path: Path) -> int:
    """A file's bytes, or a directory's (an .mlpackage): what an app ships."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def run(ctx) -> dict:
    from ..errors import StepError

    cfg: BudgetConfig = ctx.config
    size = size_on_disk(ctx.input_path("artifact"))
    report = {"bytes": size, "max_bytes": cfg.max_bytes, "declared": cfg.declared}
    what, parts = "the artifact is", ""
    if "weights" in ctx.request.inputs:  # a .pte's .ptd ships with it: the budget is for both
        program, weights = size, ctx.input_path("weights").stat().st_size
        size = report["bytes"] = program + weights
        report.update(program_bytes=program, weights_bytes=weights)
        what, parts = "the program and its weights are", f": {human_bytes(program)} .pte + {human_bytes(weights)} .ptd"
    ctx.output_path("report.json").write_text(json.dumps(report, sort_keys=True))
    if size > cfg.max_bytes:
        raise StepError(f"{what} {human_bytes(size)} ({size:,} bytes{parts}), over its max_size = \"{cfg.declared}\" "
                        f"({cfg.max_bytes:,} bytes) by {human_bytes(size - cfg.max_bytes)}")
    return {"budget": report}

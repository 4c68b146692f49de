"""Step `decompose`: run_decompositions on an exported program (.pt2 -> .pt2)."""
from __future__ import annotations

from typing import Literal

from ..lib.programs import load_program, save_program, sound_decompositions
from ..values import Spec


class DecomposeConfig(Spec):
    # "core_aten": torch's default core-ATen table; "none": `{}`, keep the high-level ops
    # (what Core ML conversion wants); "keep" with `keep`: the default table minus those ops.
    table: Literal["core_aten", "none"] = "core_aten"
    keep: list[str] = []  # ops to preserve, e.g. "aten.scaled_dot_product_attention.default"


def resolve_op(name: str):
    import torch

    from ..errors import StepError

    parts = name.removeprefix("torch.ops.").split(".")
    if len(parts) == 2:
        parts.append("default")
    try:
        namespace, op, overload = parts
        return getattr(getattr(getattr(torch.ops, namespace), op), overload)
    except (ValueError, AttributeError):
        raise StepError(f"unknown op '{name}'; write it as 'aten.op.overload', e.g. 'aten.linear.default'") from None


def decompose(ep, cfg: DecomposeConfig):
    from torch.export import default_decompositions

    if cfg.table == "none":
        return ep.run_decompositions({})
    table = default_decompositions()
    for name in cfg.keep:
        table.pop(resolve_op(name), None)
    return ep.run_decompositions(table)


def run(ctx) -> dict:
    cfg: DecomposeConfig = ctx.config
    from .export import normalize

    with sound_decompositions():
        ep = decompose(load_program(ctx.input_path("program")), cfg)
    normalize(ep, ctx.workspace)
    save_program(ep, ctx.output_path("program.pt2"))
    return {"nodes": sum(1 for n in ep.graph.nodes if n.op == "call_function")}

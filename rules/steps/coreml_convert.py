"""Step `coreml_convert`: convert an exported program (ATen ops kept) to a Core ML .mlpackage.

coremltools 9.0 converts a fixed set of ATen ops. Before converting, the program is rewritten,
without changing what it computes, so that ops it lacks but can express are expressed:
- `aten.alias` (a no-op view; transformers' logits slicing makes one) becomes `aten.alias_copy`,
  which it converts as a no-op: in a functional program the two give the same values, and this
  is what ExecuTorch's to_edge does too (which is why the Core ML .pte path converts the same
  model);
- ops torch's core-ATen table decomposes (`aten.diff`, `aten.new_ones`, `aten.__and__` in
  transformers' causal mask; `aten.where.ScalarOther` of `torch.where(mask, x, 0.0)`) are
  decomposed, and only those (torch's wider `torch._decomp` table would turn the rest into
  prims, which coremltools lacks too).
What remains unconvertible is refused with the op, the model line it comes from and what to do.
The saved package is normalized (rules.coreml.identity): no random UUIDs, no date.
"""
from __future__ import annotations

from ..coreml.identity import normalize_package
from ..coreml.options import coreml_options
from ..errors import StepError
from ..lib.programs import load_program
from ..toolchain_errors import COREML_VIA_EXECUTORCH, origin
from ..values import (
    DEFAULT_DEPLOYMENT_TARGET,
    ComputeUnits,
    DeploymentTarget,
    Precision,
    Spec,
)


class CoremlConvertConfig(Spec):
    compute_units: ComputeUnits = "all"
    compute_precision: Precision = "float16"
    minimum_deployment_target: DeploymentTarget = DEFAULT_DEPLOYMENT_TARGET


def _kind(node) -> str:
    """The op name coremltools looks up for an fx node (as its exir frontend computes it)."""
    from coremltools.converters.mil.frontend.torch.utils import sanitize_op_kind

    target = node.target
    try:
        name = target.name()
    except AttributeError:
        name = getattr(target, "__name__", str(target))
    return sanitize_op_kind(name)


def unconvertible(ep) -> dict:
    """op -> the first node of the program whose op coremltools has no conversion for."""
    from coremltools.converters.mil.frontend.torch.torch_op_registry import (
        _TORCH_OPS_REGISTRY,
    )

    found = {}
    for node in ep.graph.nodes:
        if node.op == "call_function" and _kind(node) not in _TORCH_OPS_REGISTRY.name_to_func_mapping:
            found.setdefault(node.target, node)
    return found


def convertible(ep):
    """The program with the ops coremltools lacks rewritten as ops it has; and what was rewritten."""
    import torch
    from torch.export import default_decompositions

    rewritten = []
    aliases = [n for n in ep.graph.nodes if n.op == "call_function" and n.target is torch.ops.aten.alias.default]
    for node in aliases:
        node.target = torch.ops.aten.alias_copy.default
    if aliases:
        ep.graph_module.recompile()
        rewritten.append("aten.alias.default")
    core, tried = default_decompositions(), set()
    while True:  # a decomposition can bring in ops coremltools lacks that torch decomposes further
        table = {op: core[op] for op in unconvertible(ep) if op in core and op not in tried}
        if not table:
            return ep, rewritten
        ep = ep.run_decompositions(table)
        tried.update(table)
        rewritten += sorted(str(op) for op in table)


def unconvertible_message(missing: dict, version: str, workspace) -> str:
    ops = "\n".join(
        f"  {op} (node '{node.name}'), from {origin(node.meta.get('stack_trace') or '', workspace) or 'an unrecorded line'}"
        for op, node in missing.items()
    )
    return (
        f"coremltools {version} cannot convert {len(missing)} op(s) of this model to Core ML, and torch's core-ATen "
        f"table does not decompose them into ops it can:\n{ops}\n"
        f"  workaround: {COREML_VIA_EXECUTORCH}; or rewrite that line of the model with ops Core ML converts"
    )


def run(ctx) -> dict:
    import coremltools as ct

    cfg: CoremlConvertConfig = ctx.config
    ep, rewritten = convertible(load_program(ctx.input_path("program")))
    missing = unconvertible(ep)
    if missing:
        raise StepError(unconvertible_message(missing, ct.__version__, ctx.workspace))
    mlmodel = ct.convert(ep, **coreml_options(cfg.compute_units, cfg.compute_precision, cfg.minimum_deployment_target))
    package = ctx.output_path("model.mlpackage")
    mlmodel.save(str(package))
    normalize_package(package)
    spec = mlmodel.get_spec()
    metrics = {
        "inputs": [i.name for i in spec.description.input],
        "outputs": [o.name for o in spec.description.output],
    }
    if rewritten:
        metrics["rewritten_ops"] = rewritten  # ops coremltools lacks, expressed as ops it has
    return metrics

"""Step `partition`: lower an exported program to ExecuTorch, delegating to backends (.pte).

The Edge-dialect program between partitioning and serialization has no file form other than
the .pte itself, so partitioning and serialization are one action. Core ML payloads are
normalized as they are made (rules.coreml.payload), so every .pte is byte-reproducible.
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from contextlib import contextmanager, nullcontext

from ..coreml.options import coreml_options
from ..coreml.payload import reproducible_coreml_payloads
from ..lib.programs import load_program, shared_provenance, sound_decompositions
from ..values import Backend, CoremlBackend, Spec


class PartitionConfig(Spec):
    backends: list[Backend] = []  # in priority order; empty: portable kernels only


def _partitioner(backend):
    if backend.backend == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
            XnnpackPartitioner,
        )

        return XnnpackPartitioner()
    if isinstance(backend, CoremlBackend):
        from executorch.backends.apple.coreml.compiler import CoreMLBackend
        from executorch.backends.apple.coreml.partition import CoreMLPartitioner

        options = coreml_options(backend.compute_units, backend.precision, backend.minimum_deployment_target)
        specs = CoreMLBackend.generate_compile_specs(
            compute_unit=options["compute_units"],
            minimum_deployment_target=options["minimum_deployment_target"],
            compute_precision=options["compute_precision"],
        )
        return CoreMLPartitioner(compile_specs=specs)
    if backend.backend == "mps":
        from executorch.backends.apple.mps.partition.mps_partitioner import (
            MPSPartitioner,
        )
        from executorch.exir.backend.compile_spec_schema import CompileSpec

        return MPSPartitioner(compile_specs=[CompileSpec("use_fp16", bytes([backend.use_fp16]))])
    if backend.backend == "vulkan":
        from executorch.backends.vulkan.partitioner.vulkan_partitioner import (
            VulkanPartitioner,
        )

        return VulkanPartitioner()
    raise ValueError(f"no partitioner for backend {backend.backend!r}")


# Ops that carry a model's arithmetic, and their quantized forms (quantized::linear,
# linear_dynamic, _weight_int8pack_mm, conv2d_relu, ...): matched on the op's name.
COMPUTE_OP = re.compile(r"(^|_)(conv\d?d?|convolution|conv_transpose\dd|q?linear|matmul|mm|bmm|addmm|baddbmm)(_|$)")


def op_name(node) -> str:
    return getattr(node.target, "__name__", str(node.target))


def is_compute(name: str) -> bool:
    """"aten.convolution.default" -> True; the namespace and overload are not part of the match."""
    parts = name.split(".")
    return bool(COMPUTE_OP.search(parts[1] if len(parts) >= 3 else parts[0]))


def _share(part: int, total: int) -> float | None:
    return round(part / total, 3) if total else None


def delegation_summary(edge_program) -> dict:
    """Ops delegated per backend, ops left to the portable kernels, and the shares delegated,
    of all ops and of the compute-bearing ones (conv, matmul, linear and their quantized forms)."""
    delegated: Counter = Counter()
    portable: Counter = Counter()
    compute_delegated, calls = 0, 0
    gm = edge_program.graph_module
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        name = op_name(node)
        if name == "executorch_call_delegate":
            calls += 1
            lowered = getattr(gm, node.args[0].target)
            inner = [op_name(n) for n in lowered.original_module.graph.nodes if n.op == "call_function"]
            inner = [n for n in inner if n != "getitem"]
            delegated[lowered.backend_id] += len(inner)
            compute_delegated += sum(map(is_compute, inner))
        elif name != "getitem":
            portable[name] += 1
    compute_portable = {op: n for op, n in portable.items() if is_compute(op)}
    ops = sum(delegated.values())
    total, compute_total = ops + sum(portable.values()), compute_delegated + sum(compute_portable.values())
    return {
        "delegated": dict(delegated),
        "portable": dict(sorted(portable.items())),
        "delegate_calls": calls,
        "ops": {"delegated": ops, "total": total, "share": _share(ops, total)},
        "compute_ops": {"delegated": compute_delegated, "total": compute_total,
                        "share": _share(compute_delegated, compute_total), "portable": compute_portable},
    }


@contextmanager
def why_not_partitioned():
    """Collect the reasons XNNPACK's partitioner gives, at debug level, for each node it declines
    (its WhyNoPartition messages): node name -> reason."""
    reasons: dict[str, str] = {}
    pattern = re.compile(r"WhyNoPartition: Node (\S+) was not partitioned because (.*?)\.?$", re.S)

    class Collect(logging.Handler):
        def emit(self, record):
            found = pattern.match(record.getMessage())
            if found:
                reasons.setdefault(found.group(1), found.group(2))

    logger = logging.getLogger("executorch.backends.xnnpack.partition.config")
    handler, level = Collect(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield reasons
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# Ops that move or convert a tensor without computing: a weight passes through these on its way
# from its parameter to the op that reads it.
_PASS_THROUGH = re.compile(r"(^|\.)(_?to_dim_order_copy|_to_copy|permute_copy|t_copy|transpose_copy|view_copy|clone)\.")


def _int_weight(node) -> bool:
    """Whether the node reads an 8-bit integer parameter converted to float in the graph: a
    weight-only quantized weight, dequantized at run time."""
    import torch

    for arg in node.args:
        while getattr(arg, "op", None) == "call_function" and _PASS_THROUGH.search(op_name(arg)):
            arg = arg.args[0]
        val = arg.meta.get("val") if getattr(arg, "op", None) == "placeholder" else None
        if val is not None and val.dtype in (torch.int8, torch.uint8):
            return True
    return False


def delegation_warnings(edge_program, summary: dict, backends: list, reasons: dict[str, str]) -> list[str]:
    """For an artifact that asked for delegates: compute-bearing ops that fell back to portable
    kernels (with the partitioner's reason and a known cause), and a graph mostly left undelegated."""
    if not backends:
        return []
    asked = " or ".join(b.backend for b in backends)
    warnings = []
    fallen = [n for n in edge_program.graph_module.graph.nodes if n.op == "call_function" and is_compute(op_name(n))]
    if fallen:
        why = Counter((op_name(n), reasons.get(n.name)) for n in fallen)
        listed = ", ".join(f"{op} x{count}" + (f" (XNNPACK: {reason})" if reason else "")
                           for (op, reason), count in why.items())
        text = (f"{len(fallen)} of {summary['compute_ops']['total']} compute-bearing ops run on portable kernels, "
                f"not on {asked}: {listed}")
        if any(_int_weight(n) for n in fallen):
            text += (". Their weights are 8-bit integers converted to float in the graph (weight-only quantization, "
                     f"e.g. torchao_int8_weight_only), which {asked} did not take")
            if any(b.backend == "xnnpack" for b in backends):
                text += '; for XNNPACK quantize with "torchao_int8_dynact_int8w" or "pt2e_int8_dynamic" instead'
        warnings.append(text)
    ops = summary["ops"]
    if ops["share"] is not None and ops["share"] < 0.5:
        most = ", ".join(f"{op} x{n}" for op, n in Counter(summary["portable"]).most_common(5))
        warnings.append(f"only {ops['delegated']} of {ops['total']} ops ({ops['share']:.0%}) are delegated to {asked}; "
                        f"the rest run on portable kernels, between {summary['delegate_calls']} delegate calls "
                        f"(most: {most})")
    return warnings


def run(ctx) -> dict:
    import executorch.kernels.quantized  # noqa: F401  out-variants of quantized_decomposed ops (portable lowering)
    from executorch.exir import to_edge_transform_and_lower

    cfg: PartitionConfig = ctx.config
    ep = load_program(ctx.input_path("program"))
    # only for Core ML: the patch imports coremltools, seconds that other backends need not pay
    coreml = any(isinstance(b, CoremlBackend) for b in cfg.backends)
    payloads = reproducible_coreml_payloads() if coreml else nullcontext()
    with why_not_partitioned() as reasons, sound_decompositions(), shared_provenance(), payloads:
        edge = to_edge_transform_and_lower(ep, partitioner=[_partitioner(b) for b in cfg.backends])
        summary = delegation_summary(edge.exported_program())
        warnings = delegation_warnings(edge.exported_program(), summary, cfg.backends, reasons)
        program = edge.to_executorch()
    with open(ctx.output_path("program.pte"), "wb") as f:
        program.write_to_file(f)
    for warning in warnings:
        ctx.warn(warning)
    return {"delegation": summary}

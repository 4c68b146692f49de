"""Step `partition`: lower an exported program to ExecuTorch, delegating to backends (.pte).

The Edge-dialect program between partitioning and serialization has no file form other than
the .pte itself, so partitioning and serialization are one action.
"""
from __future__ import annotations

from collections import Counter

from .programs import load_program
from .specs import Backend, CoremlBackend, Spec, coreml_options


class PartitionConfig(Spec):
    backends: list[Backend] = []  # in priority order; empty: portable kernels only


def _partitioner(backend):
    if backend.backend == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

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
        from executorch.backends.apple.mps.partition.mps_partitioner import MPSPartitioner
        from executorch.exir.backend.compile_spec_schema import CompileSpec

        return MPSPartitioner(compile_specs=[CompileSpec("use_fp16", bytes([backend.use_fp16]))])
    if backend.backend == "vulkan":
        from executorch.backends.vulkan.partitioner.vulkan_partitioner import VulkanPartitioner

        return VulkanPartitioner()
    raise ValueError(f"no partitioner for backend {backend.backend!r}")


def delegation_summary(edge_program) -> dict:
    """Ops delegated per backend, and ops left to the portable kernels."""
    delegated: Counter = Counter()
    portable: Counter = Counter()
    gm = edge_program.graph_module
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if name == "executorch_call_delegate":
            lowered = getattr(gm, node.args[0].target)
            ops = sum(1 for n in lowered.original_module.graph.nodes if n.op == "call_function")
            delegated[lowered.backend_id] += ops
        elif name != "getitem":
            portable[name] += 1
    return {"delegated": dict(delegated), "portable": dict(sorted(portable.items()))}


def run(ctx) -> dict:
    import executorch.kernels.quantized  # noqa: F401  out-variants of quantized_decomposed ops (portable lowering)
    from executorch.exir import to_edge_transform_and_lower

    cfg = PartitionConfig.model_validate(ctx.config)
    ep = load_program(ctx.input_path("program"))
    edge = to_edge_transform_and_lower(ep, partitioner=[_partitioner(b) for b in cfg.backends])
    summary = delegation_summary(edge.exported_program())
    program = edge.to_executorch()
    with open(ctx.output_path("program.pte"), "wb") as f:
        program.write_to_file(f)
    return {"delegation": summary}

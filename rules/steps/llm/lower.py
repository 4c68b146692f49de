"""Step `llm_lower`: a KV-cache program lowered to ExecuTorch (.pte), its weights in a .ptd if
asked, with the metadata methods ExecuTorch's LLM runner reads.

The lowering is what ExecuTorch's own LLM builder (executorch.extension.llm.export.builder) does:
linear ops kept whole for XNNPACK, torchao's quantized embeddings fused into ExecuTorch kernels,
graph inputs not planned (the runner owns them), and weights tagged for the data file.
"""
from __future__ import annotations

import json

from ...values import Backend, Spec

WEIGHTS_TAG = "model"  # the .ptd's name inside ExecuTorch; the file is renamed to <name>.ptd


class LlmLowerConfig(Spec):
    backends: list[Backend] = []
    external_weights: bool = False
    max_seq_len: int
    max_context_len: int


def metadata(cfg: LlmLowerConfig, model: dict, tokens: dict) -> dict:
    """The constant methods of ExecuTorch's LLM runner (extension/llm/runner/constants.h)."""
    return {
        "get_max_seq_len": cfg.max_seq_len, "get_max_context_len": cfg.max_context_len,
        "get_vocab_size": model["vocab_size"], "get_bos_id": tokens["bos_id"], "get_eos_ids": tokens["eos_ids"],
        "use_kv_cache": True, "use_sdpa_with_kv_cache": True, "enable_dynamic_shape": True,
    }


def tag_weights(ep) -> None:
    """Mark every parameter for the data file: delegates (XNNPACK) read the tag from the node."""
    sig = ep.graph_signature
    weights = set(sig.inputs_to_parameters) | set(sig.inputs_to_lifted_tensor_constants)
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in weights:
            node.meta.setdefault("custom", {})["delegate_constant_tag"] = WEIGHTS_TAG


def backend_config(cfg: LlmLowerConfig):
    from executorch.backends.xnnpack._passes.convert_to_linear import ConvertToLinearPass
    from executorch.exir import ExecutorchBackendConfig
    from executorch.exir.passes import MemoryPlanningPass
    from executorch.exir.passes.sym_shape_eval_pass import ConstraintBasedSymShapeEvalPass

    xnnpack = any(b.backend == "xnnpack" for b in cfg.backends)
    return ExecutorchBackendConfig(
        # XNNPACK's pass, for the linears it left (its portable counterpart breaks on a dynamic dim)
        passes=[ConvertToLinearPass()] if xnnpack else [], extract_delegate_segments=True, do_quant_fusion_and_const_prop=True,
        memory_planning_pass=MemoryPlanningPass(alloc_graph_input=False),
        sym_shape_eval_pass=ConstraintBasedSymShapeEvalPass(),
        external_constants=(lambda node: WEIGHTS_TAG) if cfg.external_weights else False,
    )


def permute_passes() -> list:
    """ExecuTorch's own permute clean-up: transformers applies RoPE to q and k between a transpose
    to [batch, heads, seq, dim] and one back to the cache's layout, so each layer copied q and k
    four times per token; these passes carry the transposes across the elementwise RoPE ops (and
    its slices and cat) and cancel them."""
    from executorch.backends.transforms.fuse_cascaded_transpose_or_permute_ops import (
        FuseCascadedTransposeOrPermuteOps,
    )
    from executorch.backends.transforms.remove_permutes_around_elementwise_ops import (
        RemovePermutesAroundElementwiseOps,
    )
    from executorch.exir.dialects._ops import ops as exir_ops

    return [FuseCascadedTransposeOrPermuteOps(), RemovePermutesAroundElementwiseOps({exir_ops.edge.aten.neg.default}),
            FuseCascadedTransposeOrPermuteOps()]


def run(ctx) -> dict:
    import executorch.kernels.quantized  # noqa: F401  out-variants of the quantized embedding ops
    from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401  llama::custom_sdpa's out-variant
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    from ...lib.programs import load_program, shared_provenance
    from ..partition import _partitioner, delegation_summary

    cfg: LlmLowerConfig = ctx.config
    model, tokens = (json.loads(ctx.input_path(n).read_text()) for n in ("model", "tokens"))
    ep = load_program(ctx.input_path("program"))
    if cfg.external_weights:
        tag_weights(ep)
    with shared_provenance():
        edge = to_edge_transform_and_lower(
            ep, transform_passes=permute_passes(), partitioner=[_partitioner(b) for b in cfg.backends],
            constant_methods=metadata(cfg, model, tokens),
            compile_config=EdgeCompileConfig(_check_ir_validity=False, _skip_dim_order=True))
        summary = delegation_summary(edge.exported_program())
        program = edge.to_executorch(backend_config(cfg))
    with open(ctx.output_path("program.pte"), "wb") as f:
        program.write_to_file(f)
    if cfg.external_weights:
        # What write_tensor_data_to_file writes: one data file per tag, and every weight has ours.
        with open(ctx.output_path("program.ptd"), "wb") as f:
            program._tensor_data[WEIGHTS_TAG].write_to_file(f)
    return {"delegation": summary, "metadata": metadata(cfg, model, tokens)}

"""Step `llm_export`: a causal LM, quantized if asked, exported with its KV cache (.pt2), and
the eager model's greedy generation from the prompt, the reference every check compares with.

Quantization is ExecuTorch's own source transform (executorch.extension.llm.export.quantize:
torchao configs on nn.Linear and nn.Embedding), so it happens before export: each scheme is an
export of its own, and programs that differ only in backend, weights file or tokenizer share it.
"""
from __future__ import annotations

from typing import Literal

from ...values import Spec
from ..export import ExportConfig

# The linear schemes of ExecuTorch's quantize_model_ that XNNPACK runs, by this project's names.
LINEAR_SCHEMES = {"torchao_int8_dynact_int4w": "8da4w", "torchao_int8_dynact_int8w": "8da8w"}
# bits,group size of ExecuTorch's embedding quantizer: int8 per row, int4 in groups of 32.
EMBEDDING_SCHEMES = {"int8": "8,0", "int4": "4,32"}


class LlmExportConfig(Spec):
    model: ExportConfig
    max_seq_len: int  # tokens one call may take
    max_context_len: int  # the KV cache's length
    quantize: Literal["torchao_int8_dynact_int4w", "torchao_int8_dynact_int8w"] | None = None
    group_size: int = 32
    quantize_embeddings: Literal["int8", "int4"] | None = None
    new_tokens: int = 16  # how many tokens the eager reference generates


def fold_embedding_scales(model) -> None:
    """ExecuTorch's embedding quantizer replaces every nn.Embedding with a plain quantized lookup,
    dropping what a subclass's forward adds: Gemma's GemmaTextScaledWordEmbedding multiplies by
    sqrt(hidden), and the program came out at 5 dB against eager. A scale is folded into the
    weights first (lookup(w * s) = lookup(w) * s); any other override is refused."""
    import torch
    from torch import nn

    from ...errors import StepError

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for name, module in model.named_modules():
        if not isinstance(module, nn.Embedding) or type(module).forward is nn.Embedding.forward:
            continue
        scale = getattr(module, "embed_scale", None)
        tied = head is not None and head.weight is module.weight
        if not isinstance(scale, torch.Tensor) or scale.numel() != 1 or tied:
            why = "its weight is tied to the output head" if tied else "its forward() is not a plain lookup"
            raise StepError(f"quantize_embeddings cannot quantize '{name}' ({type(module).__name__}): {why}, and "
                            "ExecuTorch's embedding quantizer replaces it with a plain lookup; drop quantize_embeddings")
        with torch.no_grad():
            module.weight.mul_(scale.to(module.weight.dtype))
            scale.fill_(1.0)


def quantize(model, cfg: LlmExportConfig):
    """ExecuTorch's own source transforms, as export_llm applies them: embeddings first (to
    ExecuTorch's quantized embedding kernels), then the linears (torchao, delegated to XNNPACK)."""
    from executorch.examples.models.llama.source_transformation.quantize import get_quant_embedding_transform
    from executorch.extension.llm.export.quantize import quantize_model_
    from torchao.utils import unwrap_tensor_subclass

    if cfg.quantize_embeddings:
        fold_embedding_scales(model)
        model = get_quant_embedding_transform(EMBEDDING_SCHEMES[cfg.quantize_embeddings])(model)
    if cfg.quantize:
        quantize_model_(
            model, qlinear_config=LINEAR_SCHEMES[cfg.quantize],
            qlinear_group_size=cfg.group_size if cfg.quantize == "torchao_int8_dynact_int4w" else 0,
            skip_incompatible_shapes=True,  # a layer the group size does not divide stays float
        )
    # Plain parameters, not torchao tensor subclasses: a saved program then holds the quantized
    # weights as constants, which lowering gives XNNPACK (and the .ptd, when asked).
    unwrap_tensor_subclass(model)
    return model


def prompt(cfg: LlmExportConfig):
    """The declared input_ids: seeded, so every build generates from the same prompt."""
    from ...lib.modelio import make_tensor

    spec = next(iter(cfg.model.inputs.values()))
    return make_tensor(spec).reshape(1, -1).long()


def run(ctx) -> dict:
    from safetensors.torch import save_file

    from ...lib.llm import custom_sdpa
    from ...lib.llm.causal_lm import export_with_cache
    from ...lib.llm.generation import eager_generate
    from ...lib.modelio import load_declared
    from ...lib.programs import save_program
    from ..export import normalize

    cfg: LlmExportConfig = ctx.config
    ids = prompt(cfg)
    reference = eager_generate(load_declared(ctx.workspace, cfg.model), ids, cfg.new_tokens, cfg.max_context_len)
    save_file({k: v.contiguous() for k, v in reference.items()}, str(ctx.output_path("reference.safetensors")))
    model = load_declared(ctx.workspace, cfg.model)  # a fresh instance: generate() leaves state on the module
    if cfg.quantize or cfg.quantize_embeddings:
        model = quantize(model, cfg)
    model.set_attn_implementation(custom_sdpa.register())  # ExecuTorch's sdpa over the static cache
    ep = export_with_cache(model, cfg.max_seq_len, cfg.max_context_len, ids.shape[1])
    normalize(ep, ctx.workspace)
    save_program(ep, ctx.output_path("program.pt2"))
    return {"nodes": sum(1 for n in ep.graph.nodes if n.op == "call_function")}

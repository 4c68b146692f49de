"""Step `llm_quantize`: a pt2e quantization of an exported language model (.pt2 -> .pt2).

pt2e quantizes the exported graph, not the nn.Module, so every pt2e scheme of a model starts
from the one float export that its fp32 programs also lower: the model is exported once however
many of these quantizations it ships. This is ExecuTorch's export_llm --pt2e_quantize flow
(xnnpack_dynamic, xnnpack_dynamic_qc4): the exported module, XNNPACKQuantizer's annotations,
prepare_pt2e, one forward over the prompt (dynamic schemes observe only the weights),
convert_pt2e, and the converted graph exported again with the same dynamic token count.
"""
from __future__ import annotations

from typing import Literal

from ...values import Spec


class LlmQuantizeConfig(Spec):
    scheme: Literal["pt2e_int8_dynamic", "pt2e_int8_dynamic_int4w"]
    max_seq_len: int  # tokens one call may take: the re-export's dynamic range
    prompt_len: int  # the example call the weights are observed on


def run(ctx) -> dict:
    import torch
    from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401  the program's llama:: ops
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from ...errors import StepError
    from ...lib.llm.causal_lm import example_call
    from ...lib.programs import load_program, save_program
    from ..export import normalize
    from ..quantize import drop_unused_tensors, graph_summary, pt2e_quantizer

    cfg: LlmQuantizeConfig = ctx.config
    kwargs, dynamic_shapes = example_call(cfg.prompt_len, cfg.max_seq_len)
    prepared = prepare_pt2e(load_program(ctx.input_path("program")).module(), pt2e_quantizer(cfg.scheme))
    with torch.no_grad():
        prepared(**kwargs)  # observes the weights; the KV cache it writes is not part of the program
    converted = convert_pt2e(prepared)
    drop_unused_tensors(converted)
    # The converted module is a plain fx graph: non-strict export captures it as it is.
    ep = torch.export.export(converted, (), kwargs, dynamic_shapes=dynamic_shapes, strict=False)
    summary = graph_summary(ep)
    if not summary["dequantized_weight_ops"]:
        raise StepError(f"scheme '{cfg.scheme}' quantized no layer of the exported model")
    normalize(ep, ctx.workspace)
    save_program(ep, ctx.output_path("program.pt2"))
    return {"scheme": cfg.scheme, **summary}

"""Step `llm_seq2seq_export`: an encoder-decoder LM, quantized if asked, exported as two programs
(encoder.pt2, and decoder.pt2 with its KV cache), and the eager model's greedy generation from
the prompt (reference.safetensors), the reference the check compares with.

Quantization is llm_export's (ExecuTorch's source transform on every nn.Linear, the head too),
before export; a seq2seq program's embeddings stay float.
"""
from __future__ import annotations

from typing import ClassVar, Literal

from ...values import Spec
from ..export import ExportConfig
from .export import prompt, quantize


class Seq2seqExportConfig(Spec):
    model: ExportConfig
    max_seq_len: int  # the decoder's KV cache: the most tokens one generation emits
    max_encoder_len: int  # the longest prompt the encoder takes
    quantize: Literal["torchao_int8_dynact_int4w", "torchao_int8_dynact_int8w"] | None = None
    group_size: int = 32
    new_tokens: int = 16  # how many tokens the eager reference generates (fewer if it emits EOS)
    quantize_embeddings: ClassVar[None] = None  # what export.quantize() reads: no embedding scheme here


def run(ctx) -> dict:
    from safetensors.torch import save_file

    from ...lib.llm.seq2seq import DECODER, ENCODER, eager_generate, export_seq2seq
    from ...lib.modelio import load_declared
    from ...lib.programs import save_program
    from ..export import normalize

    cfg: Seq2seqExportConfig = ctx.config
    ids = prompt(cfg)
    reference = eager_generate(load_declared(ctx.workspace, cfg.model), ids, cfg.new_tokens)
    save_file({k: v.contiguous() for k, v in reference.items()}, str(ctx.output_path("reference.safetensors")))
    model = load_declared(ctx.workspace, cfg.model)  # a fresh instance: generate() leaves state on the module
    if cfg.quantize:
        model = quantize(model, cfg)
    programs = export_seq2seq(model, cfg.max_seq_len, cfg.max_encoder_len)
    nodes = {}
    for method, file in ((ENCODER, "encoder.pt2"), (DECODER, "decoder.pt2")):
        normalize(programs[method], ctx.workspace)
        save_program(programs[method], ctx.output_path(file))
        nodes[method] = sum(1 for n in programs[method].graph.nodes if n.op == "call_function")
    return {"nodes": nodes}

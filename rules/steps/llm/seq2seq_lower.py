"""Step `llm_seq2seq_lower`: the encoder and the decoder lowered together into ONE ExecuTorch
program (.pte) with `encoder` and `text_decoder` methods and the metadata methods of
optimum-executorch's seq2seq programs; their weights in a .ptd if asked.

Lowering, backend config and weight tagging are llm_lower's, applied to both methods: the
methods share one constant segment (and one .ptd).
"""
from __future__ import annotations

import json

from ...values import Backend, Spec
from .lower import WEIGHTS_TAG, backend_config, tag_weights


class Seq2seqLowerConfig(Spec):
    backends: list[Backend] = []
    external_weights: bool = False
    max_seq_len: int  # the decoder's KV cache
    max_encoder_len: int


def metadata(cfg: Seq2seqLowerConfig, model: dict, tokens: dict) -> dict:
    """The constant methods optimum-executorch gives a seq2seq program, and the tokenizer's BOS id."""
    return {
        "get_max_seq_len": cfg.max_seq_len, "get_vocab_size": model["vocab_size"],
        "decoder_start_token_id": model["decoder_start_id"], "get_eos_ids": tokens["eos_ids"],
        "get_bos_id": tokens["bos_id"], "use_kv_cache": True, "max_hidden_seq_length": cfg.max_encoder_len,
        "get_max_batch_size": 1,
    }


def lower(programs: dict, cfg: Seq2seqLowerConfig, constants: dict):
    """(ExecutorchProgramManager, delegation summary per method)."""
    import executorch.kernels.quantized  # noqa: F401  out-variants of the quantized ops
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    from ...lib.programs import shared_provenance
    from ..partition import _partitioner, delegation_summary

    if cfg.external_weights:
        for ep in programs.values():
            tag_weights(ep)
    with shared_provenance():
        edge = to_edge_transform_and_lower(
            programs, partitioner=[_partitioner(b) for b in cfg.backends], constant_methods=constants,
            compile_config=EdgeCompileConfig(_check_ir_validity=False, _skip_dim_order=True))
        summary = {method: delegation_summary(edge.exported_program(method)) for method in programs}
        return edge.to_executorch(backend_config(cfg)), summary


def run(ctx) -> dict:
    from ...errors import StepError
    from ...lib.llm.seq2seq import DECODER, ENCODER
    from ...lib.programs import load_program

    cfg: Seq2seqLowerConfig = ctx.config
    model, tokens = (json.loads(ctx.input_path(n).read_text()) for n in ("model", "tokens"))
    if model["decoder_start_id"] is None:
        raise StepError(f"{model['class']} has no decoder_start_token_id: the program could not say how decoding starts")
    programs = {ENCODER: load_program(ctx.input_path("encoder")), DECODER: load_program(ctx.input_path("decoder"))}
    program, summary = lower(programs, cfg, metadata(cfg, model, tokens))
    with open(ctx.output_path("program.pte"), "wb") as f:
        program.write_to_file(f)
    if cfg.external_weights:  # as llm_lower: every weight of both methods has the one tag, so one data file
        with open(ctx.output_path("program.ptd"), "wb") as f:
            program._tensor_data[WEIGHTS_TAG].write_to_file(f)
    return {"delegation_by_method": summary, "metadata": metadata(cfg, model, tokens)}

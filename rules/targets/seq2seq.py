"""The `seq2seq_program()` target: an encoder-decoder LM (T5) as ONE ExecuTorch program, with an
`encoder` method, a `text_decoder` method over a static KV cache and optimum-executorch's
metadata methods; its weights in a .ptd if asked, its tokenizer beside it; checked by greedy
generation against the eager model.

Actions: llm_inspect (seq2seq; refusals) -> llm_seq2seq_export (quantize, export both programs,
the eager reference) -> llm_seq2seq_lower (.pte, .ptd) -> llm_seq2seq_verify, with llm_program's
llm_tokenizer reading the tokenizer alone.
"""
from __future__ import annotations

from pydantic import Field

from buildsys.rule_api import METRICS, Output, PlanContext, Planned

from ..steps.llm.export import LINEAR_SCHEMES
from ..steps.llm.inspect import LlmInspectConfig
from ..steps.llm.seq2seq_export import Seq2seqExportConfig
from ..steps.llm.seq2seq_lower import Seq2seqLowerConfig
from ..steps.llm.tokenizer import LlmTokenizerConfig
from ..steps.llm.verify import LlmVerifyConfig
from ..values import DELEGATE_IDS, Backend
from .artifacts import ArtifactDecl, ModelInputs, QuantizeOption, Shipped, size_budget
from .llm import FLOAT_LLM_TOLERANCE, QUANTIZED_LLM_TOLERANCE, _prompt_spec, _refuse_unlowerable


class Seq2seqProgram(ArtifactDecl):
    """An encoder-decoder LM in one .pte: encoder(input_ids), text_decoder(token, encoded, position)."""

    tokenizer: str  # a Hugging Face tokenizer.json in the package
    max_seq_len: int = Field(64, ge=2)  # the decoder's KV cache: the most tokens one generation emits
    max_encoder_len: int = Field(128, ge=2)  # the longest prompt the encoder takes
    backends: list[Backend] = []  # ["xnnpack"], or none: portable kernels
    quantize: QuantizeOption | None = None  # "torchao_int8_dynact_int4w" (8da4w) or "torchao_int8_dynact_int8w"
    external_weights: bool = False  # weights of both methods go to <name>.ptd beside the .pte
    new_tokens: int = Field(16, ge=1)  # how many tokens the generation check generates (fewer at EOS)
    bos_token: str | None = None  # None: the tokenizer's usual BOS name (<s>, ...)
    eos_tokens: list[str] = []  # []: the tokenizer's usual EOS name, else the model's generation config


def _refuse(decl: Seq2seqProgram, ctx: PlanContext, model: ModelInputs) -> None:
    """llm_program's refusals, and lengths the programs cannot take, said before any work."""
    if decl.quantize and decl.quantize.scheme not in LINEAR_SCHEMES:
        raise ctx.error(f"quantize '{decl.quantize.scheme}' does not apply to {ctx.target.kind}; use one of "
                        f"{', '.join(LINEAR_SCHEMES)} (ExecuTorch's 8da4w and 8da8w)")
    _refuse_unlowerable(decl, ctx)
    prompt = _prompt_spec(ctx, model).shape[1]
    if not 1 <= prompt <= decl.max_encoder_len:
        raise ctx.error(f"the prompt ({prompt} tokens, {model.label}'s input_ids) does not fit the encoder "
                        f"(max_encoder_len {decl.max_encoder_len})")
    if decl.new_tokens > decl.max_seq_len:
        raise ctx.error(f"new_tokens ({decl.new_tokens}) do not fit the decoder's KV cache (max_seq_len {decl.max_seq_len})")


def _programs(decl: Seq2seqProgram, ctx: PlanContext, model: ModelInputs):
    """The actions up to the .pte: (tokenizer, export, lower)."""
    seq, scheme = decl.max_seq_len, decl.quantize
    inspect = ctx.action("llm_inspect", LlmInspectConfig(model=model.export, max_seq_len=seq, max_context_len=seq, seq2seq=True),
                         dict(model.files), ["model.json"], subject=model.label).output("model.json")
    tokenizer = ctx.action(
        "llm_tokenizer", LlmTokenizerConfig(file=decl.tokenizer, bos_token=decl.bos_token, eos_tokens=decl.eos_tokens),
        {"tokenizer": ctx.files([decl.tokenizer], "tokenizer"), "model": inspect}, ["tokenizer.json", "tokens.json"])
    export = ctx.action("llm_seq2seq_export", Seq2seqExportConfig(
        model=model.export, max_seq_len=seq, max_encoder_len=decl.max_encoder_len, new_tokens=decl.new_tokens,
        quantize=scheme.scheme if scheme else None, group_size=scheme.group_size if scheme else 32,
    ), {**model.files, "model": inspect}, ["encoder.pt2", "decoder.pt2", "reference.safetensors"], subject=model.label)
    lower = ctx.action("llm_seq2seq_lower", Seq2seqLowerConfig(
        backends=decl.backends, external_weights=decl.external_weights, max_seq_len=seq, max_encoder_len=decl.max_encoder_len,
    ), {"encoder": export.output("encoder.pt2"), "decoder": export.output("decoder.pt2"), "model": inspect,
        "tokens": tokenizer.output("tokens.json")}, ["program.pte", *(["program.ptd"] if decl.external_weights else [])])
    return tokenizer, export, lower


def plan_seq2seq(decl: Seq2seqProgram, ctx: PlanContext) -> Planned:
    model = ModelInputs(ctx, decl.model)
    _refuse(decl, ctx, model)
    tokenizer, export, lower = _programs(decl, ctx, model)
    weights = {"weights": lower.output("program.ptd")} if decl.external_weights else {}
    companions = tuple((".ptd", out) for out in weights.values()) + ((".tokenizer.json", tokenizer.output("tokenizer.json")),)
    tolerance = decl.tolerance or (QUANTIZED_LLM_TOLERANCE[decl.quantize.scheme] if decl.quantize else FLOAT_LLM_TOLERANCE)
    shipped = Shipped(
        format="llm", model=model.label, export=model.export, files=dict(model.files),
        declaration=decl.model_dump(mode="json"), producer=Output(lower.id, METRICS), quantize=None,
        numeric=True, tolerance=tolerance, cases=[],
    )
    budget = size_budget(ctx, decl, lower.output("program.pte"), weights.get("weights"))
    planned = dict(artifact=lower.output("program.pte"), ext=".pte", companions=companions, providers=(shipped,))
    if not decl.verify:
        return Planned(**planned, checks=budget)
    config = LlmVerifyConfig(tolerance=tolerance, external_weights=decl.external_weights,
                             backends=[DELEGATE_IDS[b.backend] for b in decl.backends])
    inputs = {"artifact": lower.output("program.pte"), "reference": export.output("reference.safetensors"), **weights}
    check = ctx.action("llm_seq2seq_verify", config, inputs, ["report.json"]).output("report.json")
    return Planned(**planned, checks=(*budget, check))

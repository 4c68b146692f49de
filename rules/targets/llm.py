"""The `llm_program()` target: a causal LM as ExecuTorch's LLM runner takes it. A .pte with a
static KV cache and the runner's metadata methods, its weights in a .ptd if asked, and its
tokenizer beside it, checked by generating text against the eager model and in TextLLMRunner.

Actions: llm_inspect (what the model is; refusals) -> llm_export (torchao quantization, export
with the cache, and the eager reference generation) -> llm_quantize (pt2e schemes, on the float
export every program of the model shares) -> llm_lower (.pte, .ptd) -> llm_verify. The
tokenizer is read by llm_tokenizer alone, so editing it reruns only what reads it.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from buildsys.rule_api import METRICS, Output, PlanContext, Planned

from ..steps.llm.export import LINEAR_SCHEMES, LlmExportConfig
from ..steps.llm.inspect import LlmInspectConfig
from ..steps.llm.lower import LlmLowerConfig
from ..steps.llm.quantize import LlmQuantizeConfig
from ..steps.llm.tokenizer import LlmTokenizerConfig
from ..steps.llm.verify import LlmVerifyConfig
from ..steps.quantize import DYNAMIC_PT2E
from ..steps.verify import Tolerance
from ..values import DELEGATE_IDS, Backend
from .artifacts import ArtifactDecl, ModelInputs, QuantizeOption, Shipped, size_budget

# A float program must emit the eager model's tokens exactly. Quantized ones are held to what
# their scheme keeps on the LLM zoo (README, bench/llm_table.py), well above chance.
FLOAT_LLM_TOLERANCE = Tolerance(min_token_agreement=1.0, min_snr_db=40.0)
QUANTIZED_LLM_TOLERANCE = {
    "torchao_int8_dynact_int8w": Tolerance(min_token_agreement=0.75, min_snr_db=15.0),
    "torchao_int8_dynact_int4w": Tolerance(min_token_agreement=0.5, min_snr_db=5.0),
    "pt2e_int8_dynamic": Tolerance(min_token_agreement=0.75, min_snr_db=15.0),
    "pt2e_int8_dynamic_int4w": Tolerance(min_token_agreement=0.5, min_snr_db=5.0),
}
# Quantizations of the exported graph (llm_quantize): they share the model's one float export.
PT2E_SCHEMES = DYNAMIC_PT2E
EMBEDDINGS_TOLERANCE = {"int8": Tolerance(min_token_agreement=0.75, min_snr_db=15.0),
                        "int4": Tolerance(min_token_agreement=0.5, min_snr_db=5.0)}


class LlmProgram(ArtifactDecl):
    """A language model for ExecuTorch's LLM runner: forward(tokens, input_pos) over a KV cache."""

    tokenizer: str  # a Hugging Face tokenizer.json in the package
    max_seq_len: int = Field(128, ge=2)  # tokens one call may take (the prompt's limit)
    max_context_len: int | None = None  # the KV cache's length; None: max_seq_len
    backends: list[Backend] = []  # ["xnnpack"], or none: portable kernels
    quantize: QuantizeOption | None = None  # LINEAR_SCHEMES (torchao 8da4w, 8da8w) or PT2E_SCHEMES
    quantize_embeddings: Literal["int8", "int4"] | None = None
    external_weights: bool = False  # weights go to <name>.ptd beside the .pte
    new_tokens: int = Field(16, ge=1)  # how many tokens the generation check generates
    bos_token: str | None = None  # None: the tokenizer's usual BOS name (<s>, <|begin_of_text|>, ...)
    eos_tokens: list[str] = []  # []: the tokenizer's usual EOS name, else the model's generation config

    @model_validator(mode="after")
    def _lengths(self):
        if self.max_context_len is not None and self.max_context_len < self.max_seq_len:
            raise ValueError(f"max_context_len ({self.max_context_len}) must be at least max_seq_len "
                             f"({self.max_seq_len}): the cache holds every token a call may take")
        return self


def _refuse_unlowerable(decl: LlmProgram, ctx: PlanContext) -> None:
    """Quantizations and backends this build cannot lower, said before any work."""
    names = [b.backend for b in decl.backends]
    if any(n != "xnnpack" for n in names):
        raise ctx.error(f"{ctx.target.kind} lowers to xnnpack or to portable kernels (backends = []); got {names}")
    scheme = decl.quantize.scheme if decl.quantize else None
    if scheme is not None and scheme not in (*LINEAR_SCHEMES, *PT2E_SCHEMES):
        raise ctx.error(f"quantize '{scheme}' does not apply to a language model; use one of "
                        f"{', '.join((*LINEAR_SCHEMES, *PT2E_SCHEMES))} (ExecuTorch's 8da4w and 8da8w, and its "
                        "dynamically quantized pt2e schemes)")
    if scheme in PT2E_SCHEMES and not decl.quantize.per_channel:
        raise ctx.error(f"quantize '{scheme}' takes per-channel weight scales on a language model "
                        "(per_channel = True): the per-tensor program does not export again after conversion")
    if scheme in LINEAR_SCHEMES and "xnnpack" not in names:
        raise ctx.error(f"quantize '{scheme}' needs backends = [\"xnnpack\"]: its dynamically quantized linear ops "
                        "have no portable ExecuTorch kernel")
    if decl.verify_cases is not None:
        raise ctx.error(f"verify_cases does not apply to {ctx.target.kind}: it is checked by generating text "
                        "(new_tokens sets how much)")


def _prompt_spec(ctx: PlanContext, model: ModelInputs):
    specs = {**model.export.inputs, **model.export.keyword_inputs}
    spec = specs.get("input_ids")
    if spec is None or len(specs) != 1 or spec.dtype != "int64" or len(spec.shape) != 2 or spec.shape[0] != 1:
        raise ctx.error(f"{model.label} must declare one input, input_ids = tensor([1, N], dtype = \"int64\", "
                        f"high = <vocab size>): the prompt the generation check starts from; it declares "
                        f"{ {n: (s.shape, s.dtype) for n, s in specs.items()} }")
    return spec


def default_tolerance(decl: LlmProgram) -> Tolerance:
    if decl.quantize is not None:
        return QUANTIZED_LLM_TOLERANCE[decl.quantize.scheme]
    if decl.quantize_embeddings is not None:
        return EMBEDDINGS_TOLERANCE[decl.quantize_embeddings]
    return FLOAT_LLM_TOLERANCE


def plan_llm(decl: LlmProgram, ctx: PlanContext) -> Planned:
    _refuse_unlowerable(decl, ctx)
    model = ModelInputs(ctx, decl.model)
    spec = _prompt_spec(ctx, model)
    seq, context = decl.max_seq_len, decl.max_context_len or decl.max_seq_len
    if spec.shape[1] + decl.new_tokens > context:
        raise ctx.error(f"the prompt ({spec.shape[1]} tokens) and new_tokens ({decl.new_tokens}) do not fit the "
                        f"KV cache (max_context_len {context})")
    inspect = ctx.action("llm_inspect", LlmInspectConfig(model=model.export, max_seq_len=seq, max_context_len=context),
                         dict(model.files), ["model.json"], subject=model.label).output("model.json")
    tokenizer = ctx.action(
        "llm_tokenizer", LlmTokenizerConfig(file=decl.tokenizer, bos_token=decl.bos_token, eos_tokens=decl.eos_tokens),
        {"tokenizer": ctx.files([decl.tokenizer], "tokenizer"), "model": inspect}, ["tokenizer.json", "tokens.json"])
    scheme = decl.quantize.scheme if decl.quantize else None
    source = scheme in LINEAR_SCHEMES  # torchao: a source transform, so part of the export
    export = ctx.action("llm_export", LlmExportConfig(
        model=model.export, max_seq_len=seq, max_context_len=context, quantize=scheme if source else None,
        group_size=decl.quantize.group_size if source else 32, quantize_embeddings=decl.quantize_embeddings,
        new_tokens=decl.new_tokens,
    ), {**model.files, "model": inspect}, ["program.pt2", "reference.safetensors"], subject=model.label)
    program = export.output("program.pt2")
    if scheme in PT2E_SCHEMES:  # of the graph: every such scheme shares the float export
        program = ctx.action("llm_quantize", LlmQuantizeConfig(scheme=scheme, max_seq_len=seq, prompt_len=spec.shape[1]),
                             {"program": program}, ["program.pt2"], subject=model.label).output("program.pt2")
    outputs = ["program.pte", "program.ptd"] if decl.external_weights else ["program.pte"]
    lower = ctx.action("llm_lower", LlmLowerConfig(
        backends=decl.backends, external_weights=decl.external_weights, max_seq_len=seq, max_context_len=context,
    ), {"program": program, "model": inspect, "tokens": tokenizer.output("tokens.json")}, outputs)
    companions = ((".ptd", lower.output("program.ptd")),) if decl.external_weights else ()
    companions += ((".tokenizer.json", tokenizer.output("tokenizer.json")),)
    shipped = Shipped(
        format="llm", model=model.label, export=model.export, files=dict(model.files),
        declaration=decl.model_dump(mode="json"), producer=Output(lower.id, METRICS), quantize=None,
        numeric=True, tolerance=decl.tolerance or default_tolerance(decl), cases=[],
    )
    budget = size_budget(ctx, decl, lower.output("program.pte"), lower.output("program.ptd") if decl.external_weights else None)
    if not decl.verify:
        return Planned(artifact=lower.output("program.pte"), ext=".pte", checks=budget, companions=companions,
                       providers=(shipped,))
    config = LlmVerifyConfig(tolerance=shipped.tolerance, external_weights=decl.external_weights,
                             backends=[DELEGATE_IDS[b.backend] for b in decl.backends])
    inputs = {"artifact": lower.output("program.pte"), "reference": export.output("reference.safetensors"),
              "tokenizer": tokenizer.output("tokenizer.json"),
              **({"weights": lower.output("program.ptd")} if decl.external_weights else {})}
    check = ctx.action("llm_verify", config, inputs, ["report.json"]).output("report.json")
    return Planned(artifact=lower.output("program.pte"), ext=".pte", checks=(*budget, check), companions=companions,
                   providers=(shipped,))

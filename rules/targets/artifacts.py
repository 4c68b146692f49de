"""Artifact target kinds: each declares a format and its options, and plans its steps.

Every artifact is verified against its eager model by default (`verify = False` opts out):
the check is an action like any other, cached by the artifact's digest, and the artifact is
placed in out/ only once it passes. The eager outputs it compares against are recorded by the step
that exported (or quantized) the model, so they are shared by every artifact made from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BeforeValidator, field_validator

from buildsys.rule_api import (
    METRICS,
    Declaration,
    Output,
    PlanContext,
    Planned,
    Provider,
    Sources,
    parse_size,
)

from ..steps.aoti import AotiConfig
from ..steps.budget import BudgetConfig
from ..steps.coreml_compress import Compression, CoremlCompressConfig
from ..steps.coreml_convert import CoremlConvertConfig
from ..steps.decompose import DecomposeConfig
from ..steps.export import ExportConfig
from ..steps.onnx_export import OnnxExportConfig
from ..steps.partition import PartitionConfig
from ..steps.quantize import DEFAULT_GROUP_SIZE, Calibration, QuantizeConfig, Scheme
from ..lib.eager_outputs import FILE as EAGER_OUTPUTS
from ..steps.verify import (
    CASE_NAMES,
    FLOAT_TOLERANCE,
    CaseName,
    Tolerance,
    VerifyConfig,
)
from ..values import DELEGATE_IDS, RUNS_ON_LINUX, Backend, Spec
from .model import ModelDecl, ModelSources

# Default tolerances: float programs must match closely; quantized ones are held to what their
# scheme achieves (the README's zoo table: int8 35-52 dB, int4 27-30 dB), well above garbage (< 0 dB).
QUANTIZED_SNR_DB = {
    "pt2e_int8_static": 20.0, "pt2e_int8_dynamic": 30.0, "pt2e_int8_dynamic_int4w": 15.0, "torchao_int8_dynact_int8w": 30.0,
    "torchao_int8_weight_only": 30.0, "torchao_int8_dynact_int4w": 15.0, "torchao_int4_weight_only": 15.0,
}


def _scheme_shorthand(value):
    return {"scheme": value} if isinstance(value, str) else value


class Quantization(Spec):
    """quantize = "pt2e_int8_dynamic", or quantization(scheme, per_channel, group_size, calibration)."""

    scheme: Scheme
    per_channel: bool = True
    group_size: int = DEFAULT_GROUP_SIZE
    calibration: Calibration = Calibration()  # package-relative `file` here


QuantizeOption = Annotated[Quantization, BeforeValidator(_scheme_shorthand)]


class ArtifactDecl(Declaration):
    model: str  # label of a model() target
    verify: bool = True
    tolerance: Tolerance | None = None  # None: the default for the format and scheme
    verify_cases: list[CaseName] | None = None  # numeric cases to run, e.g. ["example", "max"]; None: all
    max_size: str | None = None  # e.g. "2MB": a larger artifact fails its target (decimal units; "MiB" binary)

    @field_validator("max_size")
    @classmethod
    def _max_size(cls, value: str | None) -> str | None:
        if value is not None:
            parse_size(value)  # its ValueError names the sizes allowed
        return value

    @field_validator("verify_cases")
    @classmethod
    def _cases(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError(f"name at least one of {', '.join(CASE_NAMES)}, or set verify = False to skip the check")
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"names a case twice: {value}")
        return value

    def dep_labels(self) -> list[str]:
        return [self.model]


class ModelInputs:
    """A model target as its steps see it: how to export it, and the files it is made of."""

    def __init__(self, ctx: PlanContext, model_label: str):
        target, planned = ctx.dep(model_label)
        if not isinstance(target.decl, ModelDecl):
            raise ctx.error(f"'model' must name a model() target, but {target.label} is a {target.kind}()")
        decl: ModelDecl = target.decl
        weights = f"{target.label.package}/{decl.weights}".lstrip("/") if decl.weights else None
        self.export = ExportConfig(
            entry=decl.entry, kwargs=decl.kwargs, init_seed=decl.init_seed, inputs=decl.inputs, keyword_inputs=decl.keyword_inputs,
            dynamic_shapes=decl.dynamic_shapes, strict=decl.strict, weights=weights,
            draft_report=decl.draft_export_report,
        )
        self.label = str(target.label)
        given = planned.get(ModelSources)
        self.files: dict[str, Sources] = {"sources": given.sources}
        if given.data is not None:
            self.files["data"] = given.data
        self.quantized: Output | None = None  # the metrics of the quantize step, once planned


@dataclass(frozen=True)
class Shipped(Provider):
    """What a release needs to know of an artifact: where it came from, how it was made and
    checked, and (as metrics inputs) what its steps reported."""

    format: str
    model: str  # the model's label
    export: ExportConfig
    files: dict[str, Sources]  # the model's sources, weights and data
    declaration: dict  # the artifact's declaration, as validated
    producer: Output  # metrics of the step that wrote the artifact (delegation, conversion, ...)
    quantize: Output | None  # metrics of the quantize step (coverage), if quantized
    numeric: bool
    tolerance: Tolerance
    cases: list[str]


def export_output(ctx: PlanContext, model: ModelInputs, quantize: Quantization | None = None) -> Output:
    """The model's program: exported, or quantized and exported. Artifacts of one model with
    the same settings share the step: same config, same action."""
    if quantize is None:
        return ctx.action("export", model.export, dict(model.files), ["program.pt2", EAGER_OUTPUTS],
                          subject=model.label).output("program.pt2")
    files = dict(model.files)
    calibration = quantize.calibration
    if calibration.file is not None:  # package-relative in BUILD.models; hashed as an input
        files["calibration"] = ctx.files([calibration.file], "calibration file")
        calibration = calibration.model_copy(update={"file": f"{ctx.label.package}/{calibration.file}".lstrip("/")})
    config = QuantizeConfig(
        export=model.export, scheme=quantize.scheme, per_channel=quantize.per_channel,
        group_size=quantize.group_size, calibration=calibration,
    )
    action = ctx.action("quantize", config, files, ["program.pt2", EAGER_OUTPUTS], subject=model.label)
    model.quantized = action.metrics()
    return action.output("program.pt2")


def quantized_tolerance(quantize: Quantization | None) -> Tolerance:
    return FLOAT_TOLERANCE if quantize is None else Tolerance(min_snr_db=QUANTIZED_SNR_DB[quantize.scheme])


def decompose_output(ctx: PlanContext, program: Output, config: DecomposeConfig) -> Output:
    return ctx.action("decompose", config, {"program": program}, ["program.pt2"]).output("program.pt2")


def size_budget(ctx: PlanContext, decl: ArtifactDecl, artifact: Output, weights: Output | None = None) -> tuple[Output, ...]:
    """max_size, as a check of its own (it holds with verify = False too): what the artifact weighs
    on a device, with its weights file (a .pte's .ptd) when it has one."""
    if decl.max_size is None:
        return ()
    config = BudgetConfig(max_bytes=parse_size(decl.max_size), declared=decl.max_size)
    inputs = {"artifact": artifact, **({"weights": weights} if weights is not None else {})}
    return (ctx.action("budget", config, inputs, ["report.json"]).output("report.json"),)


def verified(
    ctx: PlanContext, decl: ArtifactDecl, model: ModelInputs, artifact: Output, ext: str, fmt: str,
    numeric: bool, backends: list[str] = (), default: Tolerance = FLOAT_TOLERANCE, extra: dict | None = None,
    compressed: bool = False, source: Output | None = None,
) -> Planned:
    """The artifact, checked. `source` is the program it was made from: the step that made it
    (export or quantize) recorded the eager outputs a numeric check compares against."""
    tolerance = decl.tolerance or default
    if tolerance.min_token_agreement is not None:  # nothing here generates tokens to agree on
        raise ctx.error(f"min_token_agreement applies to language models (llm_program, seq2seq_program), which are "
                        f"checked by generating text; a {ctx.target.kind} is checked by its outputs: use min_snr_db "
                        "or max_abs_error")
    if not decl.verify and decl.verify_cases is not None:
        raise ctx.error("verify_cases has no effect with verify = False")
    cases = verify_cases(ctx, decl, model.export, numeric) if decl.verify else list(CASE_NAMES)
    shipped = Shipped(
        format=fmt, model=model.label, export=model.export, files=dict(model.files),
        declaration=decl.model_dump(mode="json"), producer=Output(artifact.action, METRICS), quantize=model.quantized,
        numeric=numeric, tolerance=tolerance, cases=cases,
    )
    budget = size_budget(ctx, decl, artifact)
    if not decl.verify:
        return Planned(artifact=artifact, ext=ext, checks=budget, providers=(shipped,))
    config = VerifyConfig(
        model=model.export, format=fmt, numeric=numeric, tolerance=tolerance, backends=list(backends),
        compressed=compressed, cases=cases,
    )
    if numeric:  # it reads the eager outputs, not the model
        assert source is not None, "a numeric check needs the step that recorded the eager outputs"
        inputs = {"artifact": artifact, "eager": Output(source.action, EAGER_OUTPUTS), **(extra or {})}
    else:  # a structural check, or Core ML's compressed weights in the torch model
        inputs = {"artifact": artifact, **model.files, **(extra or {})}
    check = ctx.action("verify", config, inputs, ["report.json"])
    return Planned(artifact=artifact, ext=ext, checks=(check.output("report.json"), *budget), providers=(shipped,))


def verify_cases(ctx: PlanContext, decl: ArtifactDecl, export: ExportConfig, numeric: bool) -> list[str]:
    """The declared cases in canonical order (so any order gives the same action), checked
    against what the model and the format offer."""
    if decl.verify_cases is None:
        return list(CASE_NAMES)
    if not numeric:
        raise ctx.error("verify_cases has no effect here: this artifact cannot run on Linux, so it is checked "
                        "structurally, not case by case")
    bounds = [c for c in decl.verify_cases if c != "example"]
    if bounds and not any(export.dynamic_shapes.values()):
        raise ctx.error(f"verify_cases names {', '.join(repr(b) for b in bounds)}, but {decl.model} has no dynamic "
                        "dims: its only case is 'example'")
    return [c for c in CASE_NAMES if c in decl.verify_cases]


class Pt2Program(ArtifactDecl):
    """A torch.export program, saved with torch.export.save."""

    decompose: Literal["none", "core_aten"] | None = None  # None: as exported
    keep_ops: list[str] = []  # with decompose = "core_aten": ops to preserve, e.g. "aten.linear.default"
    quantize: QuantizeOption | None = None  # a scheme name, or quantization(scheme, ...)


def plan_pt2(decl: Pt2Program, ctx: PlanContext) -> Planned:
    model = ModelInputs(ctx, decl.model)
    program = exported = export_output(ctx, model, decl.quantize)
    if decl.decompose is not None:
        program = decompose_output(ctx, program, DecomposeConfig(table=decl.decompose, keep=decl.keep_ops))
    elif decl.keep_ops:
        raise ctx.error('keep_ops needs decompose = "core_aten"')
    return verified(ctx, decl, model, program, ".pt2", "pt2", numeric=True, default=quantized_tolerance(decl.quantize),
                    source=exported)


class ExecutorchProgram(ArtifactDecl):
    """An ExecuTorch .pte: delegated to `backends` in priority order, or portable if none."""

    backends: list[Backend] = []  # in priority order; empty: portable kernels only
    quantize: QuantizeOption | None = None  # a scheme name, or quantization(scheme, ...)


def plan_executorch(decl: ExecutorchProgram, ctx: PlanContext) -> Planned:
    model = ModelInputs(ctx, decl.model)
    names = [b.backend for b in decl.backends]
    if len(set(names)) != len(names):
        raise ctx.error(f"backends lists a backend twice: {names}")
    scheme = decl.quantize.scheme if decl.quantize else None
    # Known dead ends, refused before any work: ExecuTorch has no kernels for torchao's ops.
    if scheme == "torchao_int4_weight_only":
        raise ctx.error("quantize 'torchao_int4_weight_only' cannot be lowered to ExecuTorch (torchao::dequantize_affine "
                        "has no ExecuTorch kernel); use 'torchao_int8_dynact_int4w' with backends = [\"xnnpack\"]")
    if scheme in ("torchao_int8_dynact_int4w", "torchao_int8_dynact_int8w") and "xnnpack" not in names:
        raise ctx.error(f"quantize '{scheme}' needs backends = [\"xnnpack\"]: its dynamic-activation ops have no "
                        "portable ExecuTorch kernel")
    if "coreml" in names[1:]:
        raise ctx.error("coreml() must come first in backends: executorch 1.4.1's Core ML partitioner fails "
                        "(KeyError 'val') on a graph another backend has already partitioned")
    program = export_output(ctx, model, decl.quantize)
    action = ctx.action("partition", PartitionConfig(backends=decl.backends), {"program": program}, ["program.pte"])
    numeric = set(names) <= RUNS_ON_LINUX
    return verified(
        ctx, decl, model, action.output("program.pte"), ".pte", "pte", numeric,
        backends=[DELEGATE_IDS[n] for n in names], default=quantized_tolerance(decl.quantize), source=program,
    )


# Output SNR the decompressed weights must keep by default (measured on small models:
# int8 45-57 dB; k-means 2/4/6/8 bits 9-17 / 20-32 / 33-43 / 46-58 dB).
COMPRESSED_SNR_DB = {"linear": 30.0, 8: 30.0, 6: 25.0, 4: 15.0, 2: 5.0}


class CoremlPackage(ArtifactDecl, CoremlConvertConfig):
    """A Core ML .mlpackage converted by coremltools from the exported program, optionally
    with compressed weights: compress = linear_quantize() or palettize(nbits = 4)."""

    compress: Compression | None = None
    weight_threshold: int = CoremlCompressConfig.model_fields["weight_threshold"].default


def plan_coreml(decl: CoremlPackage, ctx: PlanContext) -> Planned:
    model = ModelInputs(ctx, decl.model)
    program = decompose_output(ctx, export_output(ctx, model), DecomposeConfig(table="none"))
    config = CoremlConvertConfig(**decl.model_dump(include=set(CoremlConvertConfig.model_fields)))
    package = ctx.action("coreml_convert", config, {"program": program}, ["model.mlpackage"]).output("model.mlpackage")
    if decl.compress is None:
        return verified(ctx, decl, model, package, ".mlpackage", "mlpackage", numeric=False)
    compress = CoremlCompressConfig(compression=decl.compress, weight_threshold=decl.weight_threshold)
    compressed = ctx.action("coreml_compress", compress, {"package": package}, ["model.mlpackage"])
    key = "linear" if decl.compress.scheme == "linear" else decl.compress.nbits
    return verified(
        ctx, decl, model, compressed.output("model.mlpackage"), ".mlpackage", "mlpackage", numeric=False,
        default=Tolerance(min_snr_db=COMPRESSED_SNR_DB[key]), extra={"reference": package}, compressed=True,
    )


class OnnxModel(ArtifactDecl):
    """An ONNX model, exported from the torch.export program by torch.onnx (dynamo)."""

    opset: int = OnnxExportConfig.model_fields["opset"].default
    optimize: bool = True
    strip_metadata: bool = False
    decompose: Literal["core_aten"] | None = None  # export the decomposed program instead


def plan_onnx(decl: OnnxModel, ctx: PlanContext) -> Planned:
    model = ModelInputs(ctx, decl.model)
    config = OnnxExportConfig(
        opset=decl.opset, optimize=decl.optimize, strip_metadata=decl.strip_metadata,
        dynamic_shapes=model.export.dynamic_shapes,
    )
    program = exported = export_output(ctx, model)
    if decl.decompose:
        program = decompose_output(ctx, program, DecomposeConfig(table=decl.decompose))
    action = ctx.action("onnx_export", config, {"program": program}, ["model.onnx"])
    return verified(ctx, decl, model, action.output("model.onnx"), ".onnx", "onnx", numeric=True, source=exported)


class AotiPackage(ArtifactDecl):
    """An AOTInductor package: C++ source by default; `compile = True` builds the .so, which is
    tied to this build host's CPU (-march=native)."""

    compile: bool = False


def plan_aoti(decl: AotiPackage, ctx: PlanContext) -> Planned:
    model = ModelInputs(ctx, decl.model)
    program = export_output(ctx, model)
    action = ctx.action("aoti", AotiConfig(compile=decl.compile), {"program": program}, ["model.pt2"])
    # A source package is built by aoti_load_package on first load (g++), so both kinds run here.
    return verified(ctx, decl, model, action.output("model.pt2"), ".aoti.pt2", "aoti", numeric=True, source=program)

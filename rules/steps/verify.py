"""Step `verify`: prove an artifact computes what its eager model computes.

Artifacts that run on Linux (.pte on XNNPACK or portable kernels, .pt2, .onnx, compiled
AOTInductor) are run on the example inputs and at the min and max of every dynamic dim (the
target's `verify_cases` may pick fewer), and compared with the eager model (max abs error, SNR
in dB), next to the scale of the eager outputs. Artifacts that need a device (Core ML, MPS and
Vulkan delegates, .mlpackage) get a structural check, and the report says so.
"""
from __future__ import annotations

import json
import math
import time
from typing import Literal

from ..lib.sizes import artifact_sizes
from ..values import Spec
from .export import ExportConfig

DEVICE_ONLY = "a numeric check needs the device: this backend does not run on Linux"
CASE_NAMES = ("example", "min", "max")
CaseName = Literal["example", "min", "max"]

# Eager outputs with an RMS below this carry too little signal to compare: half precision keeps
# at most 4 significant bits there (its smallest subnormal is 6e-8), and int8 activation
# quantization floors its scale at float32 eps (1.2e-7), so such values round to zero. Trained
# models' outputs are orders of magnitude larger; randomly initialized deep ones can vanish
# (MobileNetV2Config(): about 1e-22).
VANISHING_RMS = 1e-6
VANISHING_CAUSE = "the model's outputs vanish (e.g. a random init whose activations shrink layer by layer)"
VANISHING_FIX = "load trained weights (model(weights = ...)) to check this model's artifacts meaningfully"


class Tolerance(Spec):
    """How close an artifact's outputs must be to the eager model's (either bound, or both)."""

    min_snr_db: float | None = None  # outputs must be at least this close (signal over error)
    max_abs_error: float | None = None  # no output element may differ by more
    min_token_agreement: float | None = None  # language models: the share of greedy tokens that must match eager


FLOAT_TOLERANCE = Tolerance(min_snr_db=60.0)  # what an unquantized artifact must meet


class VerifyConfig(Spec):
    model: ExportConfig
    format: Literal["pte", "pt2", "onnx", "aoti", "mlpackage"]
    numeric: bool  # False: the artifact cannot run here; check its structure only
    tolerance: Tolerance = Tolerance()
    backends: list[str] = []  # delegate ids a .pte must contain, e.g. "XnnpackBackend"
    compressed: bool = False  # an .mlpackage with compressed weights: compare them in torch
    cases: list[CaseName] = list(CASE_NAMES)  # which numeric cases run


def shapes_at(cfg: ExportConfig, bound: str | None = None) -> dict[str, list[int]]:
    """Every input's shape: the example's, or with each dynamic dim at its "min" or "max"."""
    shapes = {n: list(s.shape) for n, s in {**cfg.inputs, **cfg.keyword_inputs}.items()}
    for name, axes in cfg.dynamic_shapes.items() if bound else ():
        for axis, dim in axes.items():
            shapes[name][axis] = getattr(dim, bound)
    return shapes


def cases(cfg: ExportConfig, selected=CASE_NAMES) -> list[tuple[str, dict[str, list[int]]]]:
    """(name, input shapes) of the selected cases: the example, then every dynamic dim at its
    min, then at its max (a model without dynamic dims has the example only)."""
    out = [("example", shapes_at(cfg))] if "example" in selected else []
    dims = [dim for axes in cfg.dynamic_shapes.values() for dim in axes.values()]
    for bound in ("min", "max") if dims else ():
        if bound in selected:
            named = sorted({f"{d.name}={getattr(d, bound)}" for d in dims})
            out.append((f"{bound} ({', '.join(named)})", shapes_at(cfg, bound)))
    return out


def reference_scale(tensors) -> dict:
    """RMS and max |x| of the eager outputs' finite values, to read an error against."""
    import torch

    parts = [t.detach().reshape(-1).to(torch.float64) for t in tensors]
    flat = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)
    flat = flat[torch.isfinite(flat)]
    if flat.numel() == 0:
        return {"reference_rms": 0.0, "reference_max_abs": 0.0}
    return {"reference_rms": float(flat.pow(2).mean().sqrt()), "reference_max_abs": float(flat.abs().max())}


def _scale_text(scale: dict) -> str:
    return f"eager outputs: RMS {scale['reference_rms']:.3g}, max |x| {scale['reference_max_abs']:.3g}"


def _vanishing(scale: dict) -> str:
    """How the eager outputs vanish, e.g. "~1e-21", or "all zeros"."""
    rms = scale["reference_rms"]
    return "all zeros" if rms == 0 else f"~1e{math.floor(math.log10(rms)):d}"


def _runner(fmt: str):
    from ..lib import runners

    return {"pte": runners.run_pte, "pt2": runners.run_pt2, "onnx": runners.run_onnx, "aoti": runners.run_aoti}[fmt]


class _Case:
    """One numeric case: the artifact on the inputs the eager reference ran on, timed."""

    def __init__(self, name: str, shapes: dict):
        self.name, self.shapes = name, shapes
        self.result: dict = {"case": name, "shapes": shapes}
        self.failures: list[str] = []
        self.vanishes = False

    def run(self, expected: list, cfg: VerifyConfig, artifact, runner) -> None:
        from ..lib.modelio import example_inputs
        from ..lib.runners import compare

        started = time.monotonic()
        args, kwargs = example_inputs(cfg.model.inputs, cfg.model.keyword_inputs, self.shapes)
        scale = reference_scale(expected)
        # Integer outputs (ids, masks) compare exactly, whatever their size.
        self.vanishes = any(t.is_floating_point() for t in expected) and scale["reference_rms"] < VANISHING_RMS
        ran = time.monotonic()
        try:
            got = runner(artifact, args, kwargs)
        except Exception as err:  # the runtime refusing a declared shape is the finding
            text = str(err).strip()
            return self._fail(started, ran, text.splitlines()[0] if text else type(err).__name__,
                              "the artifact failed to run: ")
        try:
            metrics = compare(expected, got)  # JSON-safe: max_abs_error is None when not finite
        except ValueError as err:  # output count or shape differs
            return self._fail(started, ran, str(err))
        self._time(started, ran)
        self.result.update(metrics, **scale)
        self._judge(metrics, scale, cfg.tolerance)

    def _fail(self, started: float, ran: float, error: str, prefix: str = "") -> None:
        self._time(started, ran)
        self.result["error"] = error
        self.failures.append(f"{self.name}: {prefix}{error}")

    def _time(self, started: float, ran: float) -> None:
        """All of the case (inputs, artifact, comparison), and the artifact's run alone."""
        now = time.monotonic()
        self.result.update(seconds=round(now - started, 4), artifact_seconds=round(now - ran, 4))

    def _judge(self, metrics: dict, scale: dict, tol: Tolerance) -> None:
        snr = metrics["snr_db"]
        err = metrics["max_abs_error"] if metrics["max_abs_error"] is not None else float("inf")
        if tol.min_snr_db is not None and snr < tol.min_snr_db:
            self.failures.append(f"{self.name}: SNR {snr:.1f} dB is below the required {tol.min_snr_db:g} dB "
                                 f"(max abs error {err:.3g}; {_scale_text(scale)})")
        if tol.max_abs_error is not None and err > tol.max_abs_error:
            self.failures.append(f"{self.name}: max abs error {err:.3g} exceeds {tol.max_abs_error:g} "
                                 f"(SNR {snr:.1f} dB; {_scale_text(scale)})")
        if self.failures and self.vanishes:  # a failing check stays failed, but says what it measured
            self.failures.append(
                f"{self.name}: the eager outputs themselves are {_vanishing(scale)}: {VANISHING_CAUSE}, too small for a "
                f"meaningful comparison (int8 and half precision cannot hold values under {VANISHING_RMS:g}); {VANISHING_FIX}"
            )


def numeric_check(ctx, cfg: VerifyConfig) -> tuple[dict, list[str]]:
    """The report, and warnings for a check that passed on vanishing outputs."""
    from ..errors import StepError
    from ..lib import eager_outputs

    expected = eager_outputs.read(ctx.input_path("eager"))  # recorded by the export (or quantize) step
    artifact, runner = ctx.input_path("artifact"), _runner(cfg.format)
    failures, done, repeated = [], [], []
    if cfg.format == "pte":  # a capacity below the declared max is clearer said than run into
        from executorch.runtime import Runtime

        failures += _planned_shape_problems(Runtime.get().load_program(str(artifact)), cfg)
    ran: dict[str, str] = {}  # shapes -> the case that ran them
    for name, shapes in cases(cfg.model, cfg.cases):
        key = json.dumps(shapes, sort_keys=True)
        if key in ran:  # same shapes, same seeded inputs, same outputs: running them again proves nothing
            repeated.append({"case": name, "same_as": ran[key]})
            continue
        ran[key] = name
        case = _Case(name, shapes)
        case.run(expected[name], cfg, artifact, runner)
        done.append(case)
        failures += case.failures
    results = [c.result for c in done]
    report = {"numeric": True, "format": cfg.format, "tolerance": cfg.tolerance.model_dump(), "cases": results}
    if repeated:
        report["repeated"] = repeated
    if any(r.get("snr_db", 1.0) < 0 for r in results):
        hint = "the artifact's outputs are unrelated to the model's (SNR below 0 dB)"
        if "XnnpackBackend" in cfg.backends:
            hint += ("; a known cause: torchao weight-only quantized weights (tensor subclasses) lowered to XNNPACK "
                     "are read as float weights. Quantize with the artifact's `quantize` option instead")
        failures.append("hint: " + hint)
    if failures:
        raise StepError("verification failed against the eager model:\n  " + "\n  ".join(failures))
    vanished = [c for c in done if c.vanishes]
    warnings = [
        f"the check passed, but the eager outputs are {_vanishing(vanished[0].result)} "
        f"({', '.join(c.name for c in vanished)}): {VANISHING_CAUSE}, so an absolute error bound means nothing here, "
        f"and int8 or float16 artifacts of this model can lose them entirely; {VANISHING_FIX}"
    ] if vanished else []
    return report, warnings


def pte_structure(ctx, cfg: VerifyConfig) -> dict:
    """Without running: the program loads, its signature matches the model, its delegates are there."""
    from executorch.exir._serialize._program import deserialize_pte_binary
    from executorch.runtime import Runtime

    from ..errors import StepError

    path = ctx.input_path("artifact")
    program = Runtime.get().load_program(str(path))
    if "forward" not in program.method_names:
        raise StepError(f"the program has no forward method (it has {sorted(program.method_names)})")
    problems = _planned_shape_problems(program, cfg)
    upper = shapes_at(cfg.model, "max")
    pte = deserialize_pte_binary(path.read_bytes())
    plan = getattr(pte, "program", pte).execution_plan[0]
    found = sorted({d.id for d in plan.delegates})
    if cfg.backends and not set(cfg.backends) & set(found):  # in priority order, one may take all
        problems.append(f"nothing was delegated to {', '.join(cfg.backends)} (delegates: {found or 'none'})")
    if problems:
        raise StepError("structural check failed:\n  " + "\n  ".join(problems))
    return {"numeric": False, "format": "pte", "note": DEVICE_ONLY, "delegates": found, "inputs": upper}


def _planned_shape_problems(program, cfg: VerifyConfig) -> list[str]:
    """The .pte's memory plan fixes each input's largest shape: it must hold the declared max."""
    meta = program.metadata("forward")
    upper = shapes_at(cfg.model, "max")
    if meta.num_inputs() != len(upper):
        return [f"forward takes {meta.num_inputs()} inputs, the model declares {len(upper)}"]
    problems = []
    for i, (name, shape) in enumerate(upper.items()):
        planned = list(meta.input_tensor_meta(i).sizes())
        if planned != shape:
            problems.append(
                f"input '{name}' is planned for at most {planned}, but the declared dims need {shape}"
                + _capacity_hint(cfg.model, name, planned, shape)
            )
    return problems


def _capacity_hint(cfg: ExportConfig, name: str, planned: list[int], needed: list[int]) -> str:
    for axis, dim in cfg.dynamic_shapes.get(name, {}).items():
        if axis < len(planned) and planned[axis] < needed[axis] and planned[axis] == 15:
            example = cfg.inputs.get(name, cfg.keyword_inputs.get(name)).shape[axis]
            return (f" (dim '{dim.name}' capped at 15: a known torch hazard when a conv is traced with a "
                    f"symbolic batch whose example size ({example}) is under 16; use an example size of at least 16)")
    return ""


def compressed_weights_check(ctx, cfg: VerifyConfig) -> dict:
    """Core ML cannot predict here: load the decompressed weights into the torch model instead."""
    from ..coreml.weights_check import compare_compressed_weights
    from ..errors import StepError
    from ..lib.modelio import example_inputs, load_declared

    model = load_declared(ctx.workspace, cfg.model)
    args, kwargs = example_inputs(cfg.model.inputs, cfg.model.keyword_inputs)
    named = {**dict(zip(cfg.model.inputs, args)), **kwargs}
    found = compare_compressed_weights(ctx.input_path("artifact"), model, named, ctx.input_path("reference"))
    summary = {k: found[k] for k in ("max_abs_error", "snr_db", "weight_snr_db_min", "mapped", "compressed_consts",
                                     "compressed_mapped", "unmapped", "complete")}
    tol, problems = cfg.tolerance, []
    if not found["complete"]:
        problems.append(f"compressed weights not mapped to the model: {found['unmapped']}")
    if tol.min_snr_db is not None and found["snr_db"] < tol.min_snr_db:
        problems.append(f"with the decompressed weights, SNR {found['snr_db']:.1f} dB is below the required "
                        f"{tol.min_snr_db:g} dB (max abs error {found['max_abs_error']:.3g})")
    if tol.max_abs_error is not None and found["max_abs_error"] > tol.max_abs_error:
        problems.append(f"with the decompressed weights, max abs error {found['max_abs_error']:.3g} exceeds {tol.max_abs_error:g}")
    if problems:
        raise StepError("compressed-weight check failed:\n  " + "\n  ".join(problems))
    return summary


def run(ctx) -> dict:
    cfg: VerifyConfig = ctx.config
    warnings = []
    if cfg.numeric:
        report, warnings = numeric_check(ctx, cfg)
    elif cfg.format == "pte":
        report = pte_structure(ctx, cfg)
    elif cfg.format == "mlpackage":
        from ..coreml.structure import mlpackage_structure

        report = mlpackage_structure(ctx, cfg)
        if cfg.compressed:
            report["compressed_weights"] = compressed_weights_check(ctx, cfg)
    else:
        report = {"numeric": False, "format": cfg.format, "note": "not runnable here; nothing to compare"}
    report["size"] = artifact_sizes(ctx.input_path("artifact"), cfg.format)
    ctx.output_path("report.json").write_text(json.dumps(report, indent=1, sort_keys=True))
    for warning in warnings:
        ctx.warn(warning)
    return {"verification": report}

"""Step `quantize`: quantize a model and export it as a program (.pt2) for `partition` to lower.

Two families of schemes:

- pt2e (`pt2e_int8_*`): export, XNNPACKQuantizer annotates, prepare_pt2e inserts observers,
  calibration samples run through them (static only), convert_pt2e folds the weights to int8
  with quantize/dequantize pairs around each op, and the result is exported again with the
  model's dynamic shapes. Quantizes linear and conv (and the ops XNNPACK fuses with them).
  Static activations are observed by histograms whose range search (in convert_pt2e) is slow
  in torchao: rules/lib/histogram_observer.py finds the same ranges faster.
- torchao (`torchao_*`): quantize_ swaps each nn.Linear weight for a quantized tensor subclass,
  then the model is exported. The subclasses are unwrapped into plain int8/scale/zero-point
  parameters before export (as executorch.export's SourceTransformStage does). A program
  that keeps the subclass parameters lowers to XNNPACK without error but computes garbage
  for weight-only schemes (SNR below -50 dB): the XNNPACK partitioner takes the subclass
  parameter for a plain fp32 weight. Unwrapped, int8 weight-only lowers correctly, and int4
  weight-only fails loudly at lowering (`torchao::dequantize_affine` has no ExecuTorch
  kernel), which is better than wrong numbers.

Both see transformers' Conv1D (GPT-2's projections) as the nn.Linear it is equivalent to. The
metrics say which of the model's weight-bearing layers were quantized and what share of their
weight bytes (rules/lib/quantize_layers.py), and warn when that is under half, or when the program's
weights are no smaller than the float model's.

Calibration samples are seeded random tensors drawn from the model's input specs, or arrays
read from a workspace file (.npz or .safetensors) holding, per input name, [N, *shape].
The planner must list that file among the action's inputs so that editing it rebuilds.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ..lib.programs import save_program
from ..values import Spec
from .export import ExportConfig, export_model

Scheme = Literal[
    "pt2e_int8_static",  # int8 activations (calibrated) and weights; XNNPACKQuantizer
    "pt2e_int8_dynamic",  # int8 activations quantized at run time, int8 weights; XNNPACKQuantizer
    "pt2e_int8_dynamic_int4w",  # the same with int4 per-channel weights on linear layers (export_llm's xnnpack_dynamic_qc4)
    "torchao_int8_dynact_int4w",  # Int8DynamicActivationIntxWeightConfig, int4 weights PerGroup(group_size)
    "torchao_int8_dynact_int8w",  # Int8DynamicActivationIntxWeightConfig, int8 weights PerAxis(0)
    "torchao_int8_weight_only",  # Int8WeightOnlyConfig (per output channel)
    "torchao_int4_weight_only",  # IntxWeightOnlyConfig, int4 weights PerGroup(group_size)
]
GROUPED_SCHEMES = ("torchao_int8_dynact_int4w", "torchao_int4_weight_only")
DYNAMIC_PT2E = ("pt2e_int8_dynamic", "pt2e_int8_dynamic_int4w")
QDQ_NAMESPACES = ("quantized_decomposed", "torchao")
WEIGHTED_OPS = ("linear", "conv1d", "conv2d", "conv3d", "convolution", "conv_transpose1d", "conv_transpose2d")
_DEFAULT_SAMPLES = 8
DEFAULT_GROUP_SIZE = 32


class Calibration(Spec):
    """Inputs that static quantization observes to choose activation ranges."""

    samples: Annotated[int, Field(ge=1)] = _DEFAULT_SAMPLES  # seeded random samples (not with `file`)
    seed: int = 0  # sample i of an input uses seed = the input's seed + seed + i
    file: str | None = None  # workspace-relative .npz or .safetensors: per input name, [N, *shape]

    # Options are checked against their defaults, not against model_fields_set: the engine sends
    # a config as model_dump(), which sets every field.
    @model_validator(mode="after")
    def _file_or_random(self):
        if self.file is not None:
            if (self.samples, self.seed) != (_DEFAULT_SAMPLES, 0):
                raise ValueError("calibration.file gives the samples; samples and seed apply only to random samples")
            if not self.file.endswith((".npz", ".safetensors")):
                raise ValueError(f"calibration.file must be a .npz or .safetensors file, not '{self.file}'")
        return self


class QuantizeConfig(Spec):
    export: ExportConfig
    scheme: Scheme
    per_channel: bool = True  # pt2e: per-output-channel weight scales (else per-tensor)
    group_size: Annotated[int, Field(ge=1)] = DEFAULT_GROUP_SIZE  # torchao int4: input channels per scale
    calibration: Calibration = Calibration()  # pt2e_int8_static only

    @model_validator(mode="after")
    def _options_fit_scheme(self):
        if self.calibration != Calibration() and self.scheme != "pt2e_int8_static":
            raise ValueError(f"calibration applies only to scheme 'pt2e_int8_static', not '{self.scheme}'")
        if not self.per_channel and not self.scheme.startswith("pt2e_"):
            raise ValueError(f"per_channel applies only to the pt2e schemes, not '{self.scheme}'")
        if self.group_size != DEFAULT_GROUP_SIZE and self.scheme not in GROUPED_SCHEMES:
            raise ValueError(f"group_size applies only to schemes {', '.join(GROUPED_SCHEMES)}, not '{self.scheme}'")
        return self


# ---- calibration samples ----


def calibration_samples(workspace, cfg: QuantizeConfig) -> list[tuple[tuple, dict]]:
    """(args, kwargs) per sample, from the calibration file or seeded from the input specs."""
    from ..lib.modelio import make_tensor

    ex = cfg.export
    cal = cfg.calibration
    if cal.file is not None:
        return _samples_from_file(workspace, ex, cal.file)
    samples = []
    for i in range(cal.samples):
        def draw(spec):
            return make_tensor(spec.model_copy(update={"seed": spec.seed + cal.seed + i}))

        samples.append((tuple(draw(s) for s in ex.inputs.values()), {n: draw(s) for n, s in ex.keyword_inputs.items()}))
    return samples


def _read_arrays(path) -> dict:
    """name -> torch tensor, from .npz (numpy) or .safetensors."""
    import torch

    from ..errors import StepError

    try:
        if path.suffix == ".npz":
            import numpy as np

            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
            out = {}
            for name, array in arrays.items():
                if array.dtype.kind not in "biuf":
                    raise StepError(f"calibration file {path.name}: array '{name}' has dtype {array.dtype}, not a number type")
                out[name] = torch.from_numpy(np.ascontiguousarray(array))
            return out
        from safetensors.torch import load_file

        return load_file(str(path))
    except StepError:
        raise
    except Exception as err:  # numpy and safetensors raise many types for a bad file
        from ..lib.weights_file import not_safetensors

        problem = not_safetensors(path) if path.suffix == ".safetensors" else None
        raise StepError(f"calibration file {path.name} " + (f"is {problem}" if problem else
                        f"could not be read: {type(err).__name__}: {err}")) from err


def _samples_from_file(workspace, ex: ExportConfig, file: str) -> list[tuple[tuple, dict]]:
    from ..errors import StepError
    from ..lib.modelio import _DTYPES

    path = workspace / file
    if not path.is_file():
        raise StepError(f"calibration file '{file}' not found in the workspace")
    arrays = _read_arrays(path)
    specs = {**ex.inputs, **ex.keyword_inputs}
    missing = [n for n in specs if n not in arrays]
    if missing:
        raise StepError(
            f"calibration file {file} has no array for input(s) {', '.join(missing)}; "
            f"it has: {', '.join(sorted(arrays)) or 'nothing'}. "
            f"Store one array per input, named as the input, shaped [samples, *shape]"
        )
    counts = set()
    for name, spec in specs.items():
        array = arrays[name]
        dynamic = ex.dynamic_shapes.get(name, {})
        want = ["N", *(f"{dynamic[a].min}..{dynamic[a].max}" if a in dynamic else str(size)
                       for a, size in enumerate(spec.shape))]
        shape = list(array.shape)
        ok = len(shape) == len(spec.shape) + 1 and all(
            (dynamic[axis].min <= got <= dynamic[axis].max) if axis in dynamic else got == size
            for axis, (got, size) in enumerate(zip(shape[1:], spec.shape))
        )
        if not ok:
            raise StepError(
                f"calibration file {file}: array '{name}' has shape {shape}, but input '{name}' needs "
                f"[{', '.join(want)}] (a leading sample axis, then the input's shape {list(spec.shape)})"
            )
        if spec.dtype in ("float32", "float16", "bfloat16") and not array.dtype.is_floating_point:
            raise StepError(f"calibration file {file}: array '{name}' is {array.dtype}, but input '{name}' is {spec.dtype}")
        counts.add(shape[0])
    if len(counts) != 1 or 0 in counts:
        sizes = {n: int(arrays[n].shape[0]) for n in specs}
        raise StepError(f"calibration file {file}: every input needs the same number of samples (at least 1), got {sizes}")
    n = counts.pop()
    cast = {name: arrays[name].to(_DTYPES[spec.dtype]) for name, spec in specs.items()}
    return [
        (tuple(cast[name][i] for name in ex.inputs), {name: cast[name][i] for name in ex.keyword_inputs})
        for i in range(n)
    ]


# ---- quantization ----


def quantize_pt2e(model, cfg: QuantizeConfig, args, kwargs, samples, workspace):
    """Export, annotate for XNNPACK, observe (static: on the samples), convert, export again.
    Returns the program and the names of the layers whose weights were quantized."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    captured = export_model(model, args, kwargs, cfg.export, workspace).module()
    prepared = prepare_pt2e(captured, pt2e_quantizer(cfg.scheme, cfg.per_channel))
    with torch.no_grad():
        for sample_args, sample_kwargs in samples or [(args, kwargs)]:
            prepared(*sample_args, **sample_kwargs)
    converted = convert_pt2e(prepared)
    drop_unused_tensors(converted)
    quantized = _layers_with_dequantized_weights(converted)
    # The converted module is a plain fx graph: non-strict export captures it as it is.
    return export_model(converted, args, kwargs, cfg.export, workspace, strict=False), quantized


def pt2e_quantizer(scheme: str, per_channel: bool = True):
    """XNNPACKQuantizer configured for a pt2e scheme. Int4 weights (qmin -8, qmax 7, as ExecuTorch's
    export_llm sets them for xnnpack_dynamic_qc4) go to linear layers only: XNNPACK's dynamically
    quantized int4 kernels are fully connected ones."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config

    from ..lib.histogram_observer import with_fast_histograms

    dynamic = scheme in DYNAMIC_PT2E
    if scheme == "pt2e_int8_dynamic_int4w":
        config = get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=True, weight_qmin=-8,
                                                   weight_qmax=7)
        return _xnnpack_quantizer().set_operator_type(torch.ops.aten.linear.default, config)
    config = get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=dynamic)
    return _xnnpack_quantizer().set_global(with_fast_histograms(config))


def _xnnpack_quantizer():
    """XNNPACKQuantizer, but integer arithmetic stays integer. Its transform_for_annotation turns
    every scalar operand of add/mul into a float32 tensor, also in integer ops: GPT-2's position ids
    (arange + 0) become float, and the embedding they index fails."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer

    class Quantizer(XNNPACKQuantizer):
        def transform_for_annotation(self, model):
            before = {n.target for n in model.graph.nodes if n.op == "get_attr"}
            model = super().transform_for_annotation(model)
            added = {n for n in model.graph.nodes if n.op == "get_attr" and n.target not in before}
            for node in model.graph.nodes:
                val = node.meta.get("val")
                if node.op == "call_function" and isinstance(val, torch.Tensor) and not val.dtype.is_floating_point:
                    node.args = tuple(_scalar(model, a) if a in added else a for a in node.args)
            for attr in added:
                if not attr.users:
                    model.graph.erase_node(attr)
                    delattr(model, attr.target)
            model.recompile()
            return model

    return Quantizer()


def _scalar(model, attr):
    """The Python number a scalar tensor attribute holds."""
    value = getattr(model, attr.target).item()
    return int(value) if float(value).is_integer() else value


def _layers_with_dequantized_weights(gm) -> set[str]:
    """Names of the modules whose linear/conv reads a dequantized weight (from nn_module_stack)."""
    names = set()
    for node in gm.graph.nodes:
        if node.op == "call_function" and _is_weighted_op(node) and _reads_dequantized_weight(node):
            stack = node.meta.get("nn_module_stack") or {}
            if stack:
                names.add(list(stack.values())[-1][0])
    return names


def _is_weighted_op(node) -> bool:
    parts = str(node.target).split(".")
    return parts[0] == "aten" and len(parts) > 1 and parts[1] in WEIGHTED_OPS and len(node.args) > 1


def _reads_dequantized_weight(node) -> bool:
    weight = node.args[1]
    return getattr(weight, "op", None) == "call_function" and "dequantize" in str(weight.target)


def drop_unused_tensors(gm) -> None:
    """convert_pt2e folds each weight into an int8 constant but leaves the fp32 parameter on the
    module, and export would lift it (unused) into the program: remove what no node reads."""
    used = {node.target for node in gm.graph.nodes if node.op == "get_attr"}
    for name, _ in [*gm.named_parameters(remove_duplicate=False), *gm.named_buffers(remove_duplicate=False)]:
        if name not in used:
            owner, _, attr = name.rpartition(".")
            delattr(gm.get_submodule(owner), attr)


def _torchao_config(cfg: QuantizeConfig):
    import torch
    from torchao.quantization import (
        Int8DynamicActivationIntxWeightConfig,
        Int8WeightOnlyConfig,
        IntxWeightOnlyConfig,
    )
    from torchao.quantization.granularity import PerAxis, PerGroup

    if cfg.scheme == "torchao_int8_dynact_int4w":
        return Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(cfg.group_size))
    if cfg.scheme == "torchao_int8_dynact_int8w":
        return Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0))
    if cfg.scheme == "torchao_int8_weight_only":
        # set_inductor_config would change torch._inductor's global config in a long-lived worker
        return Int8WeightOnlyConfig(set_inductor_config=False)
    if cfg.scheme == "torchao_int4_weight_only":
        return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(cfg.group_size))
    raise ValueError(f"not a torchao scheme: {cfg.scheme}")


def quantize_torchao(model, cfg: QuantizeConfig, args, kwargs, workspace):
    """quantize_ the nn.Linear layers, unwrap the weight subclasses, export. Returns the program,
    the names of the layers quantized, and those skipped because group_size does not divide them."""
    import torch
    from torchao.quantization import quantize_
    from torchao.utils import TorchAOBaseTensor, unwrap_tensor_subclass

    grouped = cfg.scheme in GROUPED_SCHEMES
    linears = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    skipped = sorted(n for n, m in linears.items() if grouped and m.in_features % cfg.group_size)

    def chosen(module, fqn):
        return isinstance(module, torch.nn.Linear) and fqn not in skipped

    with torch.no_grad():
        quantize_(model, _torchao_config(cfg), filter_fn=chosen)
    quantized = {n for n, m in linears.items() if isinstance(m.weight, TorchAOBaseTensor)}
    unwrap_tensor_subclass(model)  # parametrizes the weights of child Linear modules
    if any(isinstance(p, TorchAOBaseTensor) for p in model.parameters()):
        from ..errors import StepError

        raise StepError(
            f"{cfg.export.entry} is itself an nn.Linear: its quantized weight cannot be unwrapped for export "
            f"(a program keeping it computes garbage on XNNPACK); wrap it in a module"
        )
    return export_model(model, args, kwargs, cfg.export, workspace), quantized, skipped


def _reasons(cfg: QuantizeConfig, layers, skipped: list[str]) -> dict[str, str]:
    """Why each layer the scheme could leave in float was left, by layer name."""
    from ..lib.quantize_layers import CONV1D

    if cfg.scheme.startswith("pt2e_"):
        mode = "dynamic" if cfg.scheme in DYNAMIC_PT2E else "static"
        other = f"XNNPACKQuantizer's {mode} config did not annotate them"
        if cfg.scheme == "pt2e_int8_dynamic_int4w":
            other = "int4 weights apply to linear layers only"
        embedding = "XNNPACKQuantizer does not quantize Embedding layers"
    else:
        other = f"{cfg.scheme} quantizes linear layers (and transformers' Conv1D) only"
        embedding = f"Embedding layers are not quantized by {cfg.scheme}"
    reasons = {}
    for name, layer in layers.items():
        if layer.kind.startswith("Embedding"):
            reasons[name] = embedding
        elif name in skipped:
            reasons[name] = (f"skipped for group_size {cfg.group_size}: their input features are not a multiple "
                             f"of {cfg.group_size}")
        elif layer.kind not in ("Linear", CONV1D) or cfg.scheme.startswith("pt2e_"):
            reasons[name] = other
    return reasons


# ---- metrics ----


def _tensor_bytes(ep) -> int:
    import torch

    tensors = [*ep.state_dict.values(), *ep.constants.values()]
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def graph_summary(ep) -> dict:
    """Quantize/dequantize ops in the program, by name, and the linear/conv ops fed a dequantized weight."""
    from collections import Counter

    qdq: Counter = Counter()
    fed = 0
    for node in ep.graph.nodes:
        if node.op != "call_function":
            continue
        name = str(node.target)
        if name.split(".")[0] in QDQ_NAMESPACES:
            qdq[name] += 1
        elif _is_weighted_op(node) and _reads_dequantized_weight(node):
            fed += 1
    return {"qdq_ops": dict(sorted(qdq.items())), "dequantized_weight_ops": fed}


def run(ctx) -> dict:
    from ..errors import StepError
    from ..lib.quantize_layers import Coverage, conv1d_to_linear, weight_bearing_layers
    from .export import normalize, prepare, record_eager_outputs

    cfg: QuantizeConfig = ctx.config
    ex = cfg.export
    samples = calibration_samples(ctx.workspace, cfg) if cfg.scheme == "pt2e_int8_static" else []
    model, args, kwargs = prepare(ctx.workspace, ex)
    before = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    layers = weight_bearing_layers(model)
    converted_conv1d = conv1d_to_linear(model)

    skipped: list[str] = []
    if cfg.scheme.startswith("pt2e_"):
        ep, quantized = quantize_pt2e(model, cfg, args, kwargs, samples, ctx.workspace)
    else:
        ep, quantized, skipped = quantize_torchao(model, cfg, args, kwargs, ctx.workspace)
    coverage = Coverage(layers, quantized & set(layers), _reasons(cfg, layers, skipped))
    summary = graph_summary(ep)
    if not coverage.quantized and not summary["dequantized_weight_ops"]:
        left = "; ".join(f"{reason}: {names}" for reason, names in coverage.metrics()["left_float"].items())
        raise StepError(f"scheme '{cfg.scheme}' quantized nothing in {ex.entry} ({left or 'it has no weight-bearing layers'})")

    normalize(ep, ctx.workspace)
    save_program(ep, ctx.output_path("program.pt2"))
    record_eager_outputs(ctx, ex)  # of the float model: what the quantized artifacts are checked against
    after = _tensor_bytes(ep)
    metrics = {
        "scheme": cfg.scheme,
        **summary,
        "quantized_layers": len(coverage.quantized),
        "coverage": coverage.metrics(),
        "weight_bytes": {"before": before, "after": after},
        "nodes": sum(1 for n in ep.graph.nodes if n.op == "call_function"),
    }
    if skipped:
        metrics["skipped_layers"] = skipped
    if converted_conv1d:
        metrics["conv1d_as_linear"] = converted_conv1d
    if cfg.scheme == "pt2e_int8_static":
        metrics["calibration_samples"] = len(samples)
    warnings = coverage.warnings(cfg.scheme, before, after)
    for warning in warnings:
        ctx.warn(warning)
    return metrics

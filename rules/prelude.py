"""The Starlark prelude: the value helpers BUILD.models calls (`tensor()`, `coreml()`, ...), made
from the value types themselves, so each default is stated once, on its field."""
from __future__ import annotations

from pydantic import BaseModel

from .steps.coreml_compress import LinearQuantization, Palettization
from .steps.quantize import Calibration
from .steps.verify import Tolerance
from .targets.artifacts import Quantization
from .values import (
    CoremlBackend,
    DimSpec,
    MpsBackend,
    TensorSpec,
    VulkanBackend,
    XnnpackBackend,
)

# (helper, its value type, its positional parameters in order, its keyword parameters in order)
HELPERS: list[tuple[str, type[BaseModel], list[str], list[str]]] = [
    ("tensor", TensorSpec, ["shape"], ["dtype", "seed", "fill", "low", "high"]),
    ("dim", DimSpec, ["name", "max"], ["min"]),
    ("xnnpack", XnnpackBackend, [], []),
    ("mps", MpsBackend, [], ["use_fp16"]),
    ("vulkan", VulkanBackend, [], []),
    ("coreml", CoremlBackend, [], ["compute_units", "precision", "minimum_deployment_target"]),
    ("quantization", Quantization, ["scheme"], ["per_channel", "group_size", "calibration"]),
    ("calibration", Calibration, [], ["samples", "seed", "file"]),
    ("tolerance", Tolerance, [], ["min_snr_db", "max_abs_error", "min_token_agreement"]),
    ("linear_quantize", LinearQuantization, [], []),
    ("palettize", Palettization, ["nbits"], []),
]


def _literal(value) -> str:
    """A default as Starlark writes it; a nested value's default (a model) is left to its type."""
    if value is None or isinstance(value, BaseModel):
        return "None"
    return repr(value)


def _helper(name: str, model: type[BaseModel], positional: list[str], keywords: list[str]) -> str:
    fields = model.model_fields
    tags = [f for f in fields if f not in positional + keywords]  # a tag such as backend = "coreml"
    params = positional + [f"{k} = {_literal(fields[k].default)}" for k in keywords]
    items = [f'"{t}": {_literal(fields[t].default)}' for t in tags] + [f'"{p}": {p}' for p in positional + keywords]
    return (f"def {name}({', '.join(params)}):\n"
            f"    value = {{{', '.join(items)}}}\n"
            "    return {k: v for k, v in value.items() if v != None}\n")


PRELUDE = "\n".join(_helper(*h) for h in HELPERS)

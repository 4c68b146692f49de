"""Value types BUILD.models files use: example tensors, dynamic dims, backend choices.

Plain data validated by Pydantic; no toolchain imports (the engine loads this module).
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

DType = Literal["float32", "float16", "bfloat16", "int64", "int32", "int8", "uint8", "bool"]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(Spec):
    """An example input: its shape, dtype, and how to fill it (seeded, so always the same)."""

    shape: list[Annotated[int, Field(ge=0)]]
    dtype: DType = "float32"
    seed: int = 0
    fill: Literal["randn", "rand", "zeros", "ones", "randint"] = "randn"


class DimSpec(Spec):
    """A dynamic dimension. Dims with the same name are one symbol, shared across inputs."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    min: Annotated[int, Field(ge=0)] = 1
    max: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _range(self):
        if self.min > self.max:
            raise ValueError(f"dim '{self.name}' has min {self.min} > max {self.max}")
        return self


def _backend_shorthand(value):
    return {"backend": value} if isinstance(value, str) else value


# Core ML options, shared by the Core ML delegate and .mlpackage conversion.
ComputeUnits = Literal["all", "cpu_only", "cpu_and_gpu", "cpu_and_ne"]
Precision = Literal["float16", "float32"]
DeploymentTarget = Literal["iOS15", "iOS16", "iOS17", "iOS18", "macOS12", "macOS13", "macOS14", "macOS15"]


def coreml_options(compute_units: str, precision: str, target: str) -> dict:
    """The coremltools enums for these options (imports coremltools: call it in a worker)."""
    import coremltools as ct

    return {
        "compute_units": getattr(ct.ComputeUnit, compute_units.upper()),
        "compute_precision": getattr(ct.precision, precision.upper()),
        "minimum_deployment_target": getattr(ct.target, target),
    }


class XnnpackBackend(Spec):
    backend: Literal["xnnpack"] = "xnnpack"


class CoremlBackend(Spec):
    backend: Literal["coreml"] = "coreml"
    compute_units: ComputeUnits = "all"
    precision: Precision = "float16"
    minimum_deployment_target: DeploymentTarget = "iOS17"


# "xnnpack" is shorthand for xnnpack(); the shorthand is expanded before the union is chosen.
class MpsBackend(Spec):
    backend: Literal["mps"] = "mps"
    use_fp16: bool = False


class VulkanBackend(Spec):
    backend: Literal["vulkan"] = "vulkan"


# The delegate id each backend writes into a .pte, and which of them run on this (Linux) host.
DELEGATE_IDS = {"xnnpack": "XnnpackBackend", "coreml": "CoreMLBackend", "mps": "MPSBackend", "vulkan": "VulkanBackend"}
RUNS_ON_LINUX = {"xnnpack"}

Backend = Annotated[
    Annotated[Union[XnnpackBackend, CoremlBackend, MpsBackend, VulkanBackend], Field(discriminator="backend")],
    BeforeValidator(_backend_shorthand),
]

# Starlark helpers: each builds the dict the matching Spec validates, with Starlark's own
# argument checking (an unknown keyword fails at the call, with file:line:column).
PRELUDE = '''
def tensor(shape, dtype = "float32", seed = 0, fill = "randn"):
    return {"shape": shape, "dtype": dtype, "seed": seed, "fill": fill}

def dim(name, max, min = 1):
    return {"name": name, "min": min, "max": max}

def xnnpack():
    return {"backend": "xnnpack"}

def mps(use_fp16 = False):
    return {"backend": "mps", "use_fp16": use_fp16}

def vulkan():
    return {"backend": "vulkan"}

def quantization(scheme, per_channel = True, group_size = 32, calibration = None):
    q = {"scheme": scheme, "per_channel": per_channel, "group_size": group_size}
    if calibration != None:
        q["calibration"] = calibration
    return q

def calibration(samples = 8, seed = 0, file = None):
    return {"samples": samples, "seed": seed, "file": file}

def tolerance(min_snr_db = None, max_abs_error = None):
    return {"min_snr_db": min_snr_db, "max_abs_error": max_abs_error}

def linear_quantize():
    return {"scheme": "linear"}

def palettize(nbits):
    return {"scheme": "palettize", "nbits": nbits}

def coreml(compute_units = "all", precision = "float16", minimum_deployment_target = "iOS17"):
    return {"backend": "coreml", "compute_units": compute_units, "precision": precision,
            "minimum_deployment_target": minimum_deployment_target}
'''

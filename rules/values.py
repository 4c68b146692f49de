"""Value types BUILD.models files use: example tensors, dynamic dims, backend choices.

Plain data validated by Pydantic; no toolchain imports (the engine loads this module).
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

DType = Literal["float32", "float16", "bfloat16", "int64", "int32", "int8", "uint8", "bool"]
FLOAT_DTYPES = ("float32", "float16", "bfloat16")
INT_RANGES = {"int64": (-2**63, 2**63 - 1), "int32": (-2**31, 2**31), "int8": (-128, 128), "uint8": (0, 256)}  # [lo, hi)


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(Spec):
    """An example input: its shape, dtype, and how to fill it (seeded, so always the same)."""

    shape: list[Annotated[int, Field(ge=0)]]
    dtype: DType = "float32"
    seed: int = 0
    fill: Literal["randn", "rand", "zeros", "ones", "randint"] = "randn"
    low: int | None = None  # integer draws (fill "randint", or an integer dtype) come from [low, high)
    high: int | None = None

    @model_validator(mode="after")
    def _range(self):
        if self.low is None and self.high is None:
            return self
        given = ", ".join(f"{k} = {v}" for k, v in (("low", self.low), ("high", self.high)) if v is not None)
        if self.fill in ("zeros", "ones"):
            raise ValueError(f'{given} has no effect with fill = "{self.fill}"; drop it, or use fill = "randint"')
        if self.dtype == "bool":
            raise ValueError(f"{given} does not apply to a bool input: its values are 0 and 1")
        if self.dtype in FLOAT_DTYPES and self.fill != "randint":
            raise ValueError(f'{given} applies to integer draws: use fill = "randint" (or an integer dtype), '
                             f'not fill = "{self.fill}"')
        low, high = self.int_range()
        if low >= high:
            default = " (high defaults to 10)" if self.high is None else ""
            raise ValueError(f"low ({low}) must be below high ({high}){default}: values are drawn from [low, high)")
        if self.dtype in INT_RANGES:
            lo, hi = INT_RANGES[self.dtype]
            if low < lo or high > hi:
                raise ValueError(f"[{low}, {high}) does not fit {self.dtype}, whose values lie in [{lo}, {hi})")
        return self

    def int_range(self) -> tuple[int, int]:
        """[low, high) of integer draws: 0 to 10 unless declared (bool: 0 to 2)."""
        default_high = 2 if self.dtype == "bool" else 10
        return (0 if self.low is None else self.low), (default_high if self.high is None else self.high)


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
DEFAULT_DEPLOYMENT_TARGET: DeploymentTarget = "iOS17"  # the Core ML delegate's and .mlpackage conversion's


class XnnpackBackend(Spec):
    """The XNNPACK delegate (CPU; runs on Linux)."""

    backend: Literal["xnnpack"] = "xnnpack"


class CoremlBackend(Spec):
    """The Core ML delegate (Apple devices; lowered here, run on the device)."""

    backend: Literal["coreml"] = "coreml"
    compute_units: ComputeUnits = "all"
    precision: Precision = "float16"
    minimum_deployment_target: DeploymentTarget = DEFAULT_DEPLOYMENT_TARGET


# "xnnpack" is shorthand for xnnpack(); the shorthand is expanded before the union is chosen.
class MpsBackend(Spec):
    """The MPS delegate (Apple GPUs; lowered here, run on the device)."""

    backend: Literal["mps"] = "mps"
    use_fp16: bool = False


class VulkanBackend(Spec):
    """The Vulkan delegate (Android GPUs; lowered here, run on the device)."""

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


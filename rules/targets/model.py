"""The `model()` target: a PyTorch module, its example inputs and how to export it."""
from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import Field, JsonValue, field_validator, model_validator

from buildsys.rule_api import Declaration, PlanContext, Planned, Provider, Sources, did_you_mean

from ..lib.weights_file import CONVERT, not_safetensors
from ..values import DimSpec, TensorSpec

_ENTRY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


class ModelDecl(Declaration):
    """A PyTorch model: a callable in the workspace that returns an nn.Module, and its example inputs."""

    entry: str  # "package.module:callable", the callable returns an nn.Module
    kwargs: dict[str, JsonValue] = {}  # plain values the entry is called with (keyed like every field)
    inputs: dict[str, TensorSpec] = Field(min_length=1)  # positional, in order
    keyword_inputs: dict[str, TensorSpec] = {}
    dynamic_shapes: dict[str, dict[int, DimSpec]] = {}  # input name -> axis -> dim
    weights: str | None = None  # package-relative .safetensors, loaded with load_state_dict
    data: list[str] = []  # package-relative files the model reads (hashed into its digest)
    strict: bool = False  # torch.export strict (TorchDynamo) or non-strict tracing
    init_seed: int = 0  # torch.manual_seed before the entry is called: random init is reproducible
    draft_export_report: bool = False  # when export fails, add torch.export.draft_export's report

    @field_validator("entry")
    @classmethod
    def _entry(cls, value: str) -> str:
        if not _ENTRY.match(value):
            raise ValueError(f"entry must be 'package.module:callable', got {value!r}")
        return value

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith(".safetensors"):
            raise ValueError(f"weights must be a .safetensors file, got {value!r}")
        return value

    @model_validator(mode="after")
    def _dynamic(self):
        specs = {**self.inputs, **self.keyword_inputs}
        overlap = set(self.inputs) & set(self.keyword_inputs)
        if overlap:
            raise ValueError(f"inputs and keyword_inputs both name {sorted(overlap)}")
        seen: dict[str, DimSpec] = {}
        for name, axes in self.dynamic_shapes.items():
            if name not in specs:
                raise ValueError(f"dynamic_shapes names input '{name}', but the inputs are {sorted(specs)}")
            shape = specs[name].shape
            for axis, dim in axes.items():
                if not 0 <= axis < len(shape):
                    raise ValueError(f"dynamic_shapes['{name}'] axis {axis} is out of range for shape {shape}")
                size = shape[axis]
                if size < 2:
                    # torch.export specializes a dim whose example size is 0 or 1, then fails.
                    raise ValueError(
                        f"input '{name}' axis {axis} is dynamic ('{dim.name}') but its example size is {size}; "
                        f"torch.export specializes sizes 0 and 1, so use an example size of at least 2"
                    )
                if not dim.min <= size <= dim.max:
                    raise ValueError(
                        f"input '{name}' axis {axis} has example size {size}, outside dim '{dim.name}' "
                        f"[{dim.min}, {dim.max}]"
                    )
                if dim.name in seen and seen[dim.name] != dim:
                    raise ValueError(f"dim '{dim.name}' is declared twice with different ranges")
                seen[dim.name] = dim
        return self

    @property
    def module(self) -> str:
        return self.entry.partition(":")[0]


@dataclass(frozen=True)
class ModelSources(Provider):
    """What a model() gives the targets that export it: its Python sources, and its weights and data files."""

    sources: Sources
    data: Sources | None = None


def plan_model(decl: ModelDecl, ctx: PlanContext) -> Planned:
    """A model builds nothing alone; its dependents export it. It provides its source inputs."""
    sources = ctx.python_module(decl.module)
    attr = decl.entry.partition(":")[2]
    names = ctx.python_names(decl.module)
    if names is not None and attr not in names:  # found now, not when its export runs
        public = sorted(n for n in names if not n.startswith("_"))
        raise ctx.error(f"entry '{decl.entry}': module '{decl.module}' defines no '{attr}'"
                        f"{did_you_mean(attr, public)}; it defines: {', '.join(public) or 'nothing public'}")
    parts = []
    if decl.weights:
        parts.append(ctx.files([decl.weights], "weights file"))
        problem = not_safetensors(ctx.package_dir() / decl.weights)
        if problem:
            raise ctx.error(f"weights '{decl.weights}' is {problem}; weights are loaded with "
                            f"safetensors.torch.load_file, {CONVERT}")
    if decl.data:
        parts.append(ctx.files(decl.data, "data file"))
    data = Sources.union(parts) if parts else None
    return Planned(providers=(ModelSources(sources, data),))

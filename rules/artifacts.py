"""Artifact target kinds: each declares a format and its options, and plans its steps."""
from __future__ import annotations

from typing import Literal

from buildsys.planning import Output, PlanContext, Planned
from buildsys.ruleset import Declaration

from .coreml_convert import CoremlConvertConfig
from .decompose import DecomposeConfig
from .export import ExportConfig
from .model import ModelDecl
from .partition import PartitionConfig
from .specs import Backend


class ArtifactDecl(Declaration):
    model: str  # label of a model() target

    def dep_labels(self) -> list[str]:
        return [self.model]


def export_output(ctx: PlanContext, model_label: str) -> Output:
    """The model's export step. Artifacts of one model share it: same config, same action."""
    target, planned = ctx.dep(model_label)
    decl = target.decl
    if not isinstance(decl, ModelDecl):
        raise ctx.error(f"'model' must name a model() target, but {target.label} is a {target.kind}()")
    weights = f"{target.label.package}/{decl.weights}".lstrip("/") if decl.weights else None
    config = ExportConfig(
        entry=decl.entry, init_seed=decl.init_seed, inputs=decl.inputs, keyword_inputs=decl.keyword_inputs,
        dynamic_shapes=decl.dynamic_shapes, strict=decl.strict, weights=weights,
    )
    inputs = {"sources": planned.provides["sources"]}
    if planned.provides["data"] is not None:
        inputs["data"] = planned.provides["data"]
    return ctx.action("export", config, inputs, ["program.pt2"]).output("program.pt2")


def decompose_output(ctx: PlanContext, program: Output, config: DecomposeConfig) -> Output:
    return ctx.action("decompose", config, {"program": program}, ["program.pt2"]).output("program.pt2")


class Pt2Program(ArtifactDecl):
    """A torch.export program, saved with torch.export.save."""

    decompose: Literal["none", "core_aten"] | None = None  # None: as exported
    keep_ops: list[str] = []  # with decompose = "core_aten": ops to preserve


def plan_pt2(decl: Pt2Program, ctx: PlanContext) -> Planned:
    program = export_output(ctx, decl.model)
    if decl.decompose is not None:
        program = decompose_output(ctx, program, DecomposeConfig(table=decl.decompose, keep=decl.keep_ops))
    elif decl.keep_ops:
        raise ctx.error("keep_ops needs decompose = \"core_aten\"")
    return Planned(artifact=program, ext=".pt2")


class ExecutorchProgram(ArtifactDecl):
    """An ExecuTorch .pte: delegated to `backends` in priority order, or portable if none."""

    backends: list[Backend] = []


def plan_executorch(decl: ExecutorchProgram, ctx: PlanContext) -> Planned:
    program = export_output(ctx, decl.model)
    names = [b.backend for b in decl.backends]
    if len(set(names)) != len(names):
        raise ctx.error(f"backends lists a backend twice: {names}")
    action = ctx.action("partition", PartitionConfig(backends=decl.backends), {"program": program}, ["program.pte"])
    return Planned(artifact=action.output("program.pte"), ext=".pte")


class CoremlPackage(ArtifactDecl, CoremlConvertConfig):
    """A Core ML .mlpackage converted by coremltools from the exported program."""


def plan_coreml(decl: CoremlPackage, ctx: PlanContext) -> Planned:
    program = decompose_output(ctx, export_output(ctx, decl.model), DecomposeConfig(table="none"))
    config = CoremlConvertConfig(**decl.model_dump(include=set(CoremlConvertConfig.model_fields)))
    action = ctx.action("coreml_convert", config, {"program": program}, ["model.mlpackage"])
    return Planned(artifact=action.output("model.mlpackage"), ext=".mlpackage")

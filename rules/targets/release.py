"""The `release()` target: artifacts packed into one reproducible archive with a manifest and
provenance (the release step, rules/steps/release.py, writes it).

Its dependencies are the artifacts it lists, by label or by pattern; a failed artifact fails
the release. With `bundle_tests = True` every .pte also ships as an ExecuTorch BundledProgram
(.bpte) holding the verification cases, for a device lab to run.
"""
from __future__ import annotations

import os
import re

from pydantic import Field, field_validator

from buildsys.rule_api import Declaration, Label, PlanContext, Planned

from ..release.provenance import load_private_key
from ..steps.bundle import BundleConfig
from ..steps.release import ReleaseConfig, ReleaseEntry
from .artifacts import Shipped

# The archive's entries are dated SOURCE_DATE_EPOCH when it is set, else this constant
# (1980-01-01, the earliest date a zip can hold, so tools that repack the files keep it).
DEFAULT_EPOCH = 315532800
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]*$")


def _is_pattern(text: str) -> bool:
    return text.endswith("...") or text.endswith(":all")


class ReleaseDecl(Declaration):
    """An archive of artifacts with a manifest and provenance, byte-identical across clean builds."""

    artifacts: list[str] = Field(min_length=1)  # labels or patterns of artifact targets
    version: str  # shipped in the manifest, e.g. "1.4.0"
    bundle_tests: bool = False  # also ship a .bpte (BundledProgram with the checks) next to each .pte

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value):
        if not isinstance(value, str):
            raise ValueError(f"version must be a string such as \"1.4.0\", got {type(value).__name__} {value!r}")
        if not _VERSION.match(value):
            raise ValueError(f"version {value!r} must start with a letter or digit and use only letters, digits and ._+~-")
        return value

    def dep_labels(self) -> list[str]:
        return [a for a in self.artifacts if not _is_pattern(a)]

    def dep_patterns(self) -> list[str]:
        return [a for a in self.artifacts if _is_pattern(a)]

    def selects(self, kind: str) -> bool:
        return kind not in ("model", "release")  # a pattern ships the artifacts it covers


def archive_path(label: Label, ext: str) -> str:
    """Where an artifact sits in the archive: its package path kept, so `//a:m` and `//b:m` differ."""
    return "/".join(p for p in ("artifacts", label.package, label.name + ext) if p)


def _epoch(ctx: PlanContext) -> int:
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None or raw == "":
        return DEFAULT_EPOCH
    if not str(raw).isdigit():
        raise ctx.error(f"SOURCE_DATE_EPOCH must be a whole number of seconds since 1970, got {raw!r}")
    return int(raw)


def plan_release(decl: ReleaseDecl, ctx: PlanContext) -> Planned:
    if not ctx.target.deps:
        raise ctx.error(f"artifacts {decl.artifacts} name no artifact target (patterns ship artifacts, not "
                        "models or releases)")
    entries, inputs, paths = [], {}, {}
    for i, label in enumerate(sorted(ctx.target.deps)):
        target, planned = ctx.dep(str(label))
        shipped = planned.get(Shipped)
        if shipped is None:
            hint = " (list its artifacts, e.g. the executorch_program() targets built from it)" \
                if target.kind == "model" else ""
            raise ctx.error(f"artifacts lists {label}, a {target.kind}(), but a release ships artifacts "
                            f"(pt2_program, executorch_program, coreml_package, onnx_model, aoti_package, llm_program){hint}")
        path = archive_path(label, planned.ext)
        entry = dict(
            label=str(label), path=path, input=f"artifact.{i}", format=shipped.format, model=shipped.model,
            sources=dict(shipped.files["sources"].files),
            data=dict(shipped.files["data"].files) if "data" in shipped.files else {},
            declaration=shipped.declaration, producer=f"producer.{i}",
        )
        inputs[f"artifact.{i}"] = planned.artifact
        entry["companions"] = {archive_path(label, ext): inputs_key(inputs, f"companion.{i}.{j}", output)
                               for j, (ext, output) in enumerate(planned.companions)}
        inputs[f"producer.{i}"] = shipped.producer
        if shipped.quantize is not None:
            entry["quantize"] = inputs_key(inputs, f"quantize.{i}", shipped.quantize)
        if planned.checks:
            entry["report"] = inputs_key(inputs, f"report.{i}", planned.checks[0])
        if decl.bundle_tests and shipped.format == "pte":
            bundle = ctx.action("bundle", BundleConfig(
                model=shipped.export, cases=shipped.cases, check=shipped.numeric, tolerance=shipped.tolerance,
            ), {"program": planned.artifact, **shipped.files}, ["program.bpte"])
            entry.update(bundle=inputs_key(inputs, f"bundle.{i}", bundle.output("program.bpte")),
                         bundle_path=path.removesuffix(".pte") + ".bpte",
                         bundle_check=inputs_key(inputs, f"bundle_check.{i}", bundle.metrics()))
        for p in filter(None, (path, entry.get("bundle_path"), *entry["companions"])):
            if p in paths:
                raise ctx.error(f"{label} and {paths[p]} would both be {p} in the archive")
            paths[p] = label
        entries.append(ReleaseEntry(**entry))
    sign_key = ctx.setting("sign_key")
    if sign_key is not None:
        try:
            load_private_key(sign_key)
        except ValueError as err:
            raise ctx.error(f"--sign-key: {err}") from None
        inputs["sign_key"] = ctx.external_file(sign_key)
    config = ReleaseConfig(
        label=str(ctx.label), version=decl.version, epoch=_epoch(ctx), revision=ctx.revision(), entries=entries,
        signed=sign_key is not None,
    )
    action = ctx.action("release", config, inputs, ["release.tar.gz"])
    return Planned(artifact=action.output("release.tar.gz"), ext=".tar.gz")


def inputs_key(inputs: dict, name: str, value) -> str:
    inputs[name] = value
    return name

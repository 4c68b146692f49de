"""What a target kind's plan() works with: the target, the context it plans in, and what it returns.

A target kind declares actions through the context (`ctx.action(...)`), wires them by their
outputs, and returns what the target gives: an artifact for out/, the checks that must pass
before it lands there, and typed providers for its dependents. The planner (buildsys/planning.py)
implements PlanContext; nothing here loads the evaluator or the graph library.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from ..digests import digest_json
from ..errors import Location, UserError
from ..labels import Label


class Declaration(BaseModel):
    """A validated BUILD.models call. Subclasses list their fields; unknown ones are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str  # the target's name: //package:name
    # As in Bazel (load/visibility.py): public unless it or its package's default says otherwise.
    visibility: list[str] = ["//visibility:public"]  # who may depend on it: "//pkg/...", "//pkg:__pkg__", ...

    def dep_labels(self) -> list[str]:
        """Labels (as written) of the targets this one depends on."""
        return []

    def dep_patterns(self) -> list[str]:
        """Patterns (`//pkg/...`, `//pkg:all`) whose targets this one depends on, those of the
        kinds `selects` accepts (a release of `//...` does not ship its models, nor itself)."""
        return []

    def selects(self, kind: str) -> bool:
        return True



@dataclass(frozen=True)
class Target:
    """A validated BUILD.models call, with where it was made and the labels it depends on."""

    label: Label
    kind: str
    decl: Declaration
    location: Location
    deps: tuple[Label, ...]


@dataclass(frozen=True)
class Sources:
    """Workspace files an action reads: (workspace-relative path, digest of its bytes), sorted. A
    Python module's files also have a code digest (`code`), which keys actions in place of the
    bytes, so a comment or a blank line in a model's module reruns nothing."""

    files: tuple[tuple[str, str], ...]
    code: tuple[tuple[str, str], ...] = ()  # (path, code digest) of the Python files among `files`

    def keyed(self) -> list[list[str]]:
        """(path, digest) as keys see them: a Python module's file by its code, any other by its bytes."""
        code = dict(self.code)
        return [[path, code.get(path, digest)] for path, digest in self.files]

    def digest(self) -> str:
        return digest_json(self.keyed())

    @classmethod
    def union(cls, parts: "list[Sources]") -> "Sources":
        return cls(tuple(sorted({f for part in parts for f in part.files})),
                   tuple(sorted({f for part in parts for f in part.code})))


P = TypeVar("P", bound="Provider")

# The name under which what an action reported can be another action's input: its metrics as JSON,
# with its warnings, if it gave any, under "warnings".
METRICS = "@metrics"


@dataclass(frozen=True)
class Output:
    action: str  # id of the producing action
    name: str  # one of its outputs, or METRICS


@dataclass
class Action:
    id: str
    step: str
    config: dict
    inputs: dict[str, Sources | Output]
    outputs: tuple[str, ...]
    rule_digest: str
    owners: set[Label] = field(default_factory=set)
    # What it works on, when that is not its owners: the model a shared export serves. Not in its id.
    subject: Label | None = None
    # Where the target that first planned it is declared (BUILD.models:12): failures say so. Not in its id.
    where: str | None = None

    def output(self, name: str) -> Output:
        assert name in self.outputs, (self.step, name)
        return Output(self.id, name)

    def metrics(self) -> Output:
        """What the step reported (its metrics), as an input for a step that summarizes it."""
        return Output(self.id, METRICS)

    @property
    def label(self) -> Label:
        return min(self.owners)

    def describe(self) -> str:
        """What it is for, in a line: `export //:transformer (for 4 targets)`, `partition //:a_xnnpack`."""
        shared = f" (for {len(self.owners)} targets)" if len(self.owners) > 1 else ""
        return f"{self.step} {self.subject or self.label}{shared}"


@dataclass(frozen=True)
class Provider:
    """A typed fact a target gives its dependents (Bazel's providers): rules subclass it as a
    frozen dataclass, and a dependent asks for it by type."""


@dataclass(frozen=True)
class Planned:
    """What a target contributes: an artifact to place in out/, the checks that must pass
    before it is placed there, and providers for dependents."""

    artifact: Output | None = None
    ext: str = ""  # out/<package>/<name><ext>
    checks: tuple[Output, ...] = ()
    providers: tuple[Provider, ...] = ()
    # Files placed beside the artifact, at out/<package>/<name><ext>: (ext, output). A language
    # model ships its .pte with a weights file and a tokenizer; they pass or fail together.
    companions: tuple[tuple[str, Output], ...] = ()

    def get(self, kind: type[P]) -> P | None:
        """The provider of this type, or None if the target gives none."""
        return next((p for p in self.providers if isinstance(p, kind)), None)

    def required_actions(self) -> set[str]:
        own = {self.artifact.action} if self.artifact else set()
        return own | {c.action for c in self.checks} | {o.action for _, o in self.companions}

    def exts(self) -> list[str]:
        """Where the target's files go in out/: the artifact's ext, then its companions'."""
        return [self.ext, *(ext for ext, _ in self.companions)] if self.artifact else []


class PlanContext(Protocol):
    """The view of the build a target kind's plan() gets (the planner implements it)."""

    target: Target
    label: Label

    def error(self, message: str) -> UserError:
        """An error about this target, at its BUILD.models call site."""

    def python_module(self, module: str) -> Sources:
        """The module's file and every first-party module it imports, from the workspace root."""

    def python_names(self, module: str) -> frozenset[str] | None:
        """The names a workspace module defines at its top level, read without running it; None
        when that cannot be known so (a star import, a module __getattr__)."""

    def package_dir(self) -> Path:
        """The target's package directory."""

    def files(self, paths: list[str], what: str = "file") -> Sources:
        """Package-relative files (weights, data, calibration), each inside the package's directory."""

    def setting(self, name: str) -> object | None:
        """A build-wide setting given on the command line (a rule set's Flag), or None."""

    def revision(self) -> dict:
        """The workspace's version-control state: {"vcs": "git", "commit", "dirty"} or {"vcs": None}."""

    def external_file(self, path: Path) -> Sources:
        """A file the build was pointed at from outside the workspace (a key given on the command line)."""

    def dep(self, text: str) -> tuple[Target, Planned]:
        """A dependency (a label as written, relative to this package): its target and what it planned."""

    def action(self, step: str, config: BaseModel, inputs: dict[str, Sources | Output], outputs: list[str],
               subject: str | None = None) -> Action:
        """Declare an action of a step kind, with that step's config: identical ones are one action.
        `subject`, a label: what it works on, shown in progress when several targets share it."""

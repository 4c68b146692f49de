"""The contract between the engine and a set of rules (Buck2-style: the core knows no formats).

A rule set names its target kinds (the functions BUILD.models may call), its step kinds (the
actions workers run) and a Starlark prelude of value helpers such as `tensor()`. Importing a rule
set must not import the toolchain: step modules are imported by name, inside workers only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from .planning import PlanContext, Planned


class Declaration(BaseModel):
    """A validated BUILD.models call. Subclasses list their fields; unknown ones are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str

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
class TargetKind:
    name: str  # the BUILD.models function, e.g. "executorch_program"
    decl: type[Declaration]
    plan: Callable[["Declaration", "PlanContext"], "Planned"]


@dataclass(frozen=True)
class StepKind:
    name: str  # e.g. "export"
    module: str  # e.g. "rules.export"; imported only in workers, hashed for the action key
    packages: tuple[str, ...]  # distributions whose versions enter the action key
    host_bound: bool = False  # its output is native code for this CPU: the CPU enters the key too


@dataclass(frozen=True)
class RuleSet:
    kinds: dict[str, TargetKind]
    steps: dict[str, StepKind]
    prelude: str = ""  # Starlark source evaluated before every BUILD.models and .star file
    worker: str = "rules.worker:serve"  # "module:function" run in each worker process
    rule_roots: tuple[str, ...] = field(default=("rules",))  # top-level packages of rule code

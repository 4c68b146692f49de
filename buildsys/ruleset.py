"""The contract between the engine and a set of rules (Buck2-style: the core knows no formats).

A rule set names its target kinds (the functions BUILD.models may call), its step kinds (the
actions workers run) and a Starlark prelude of value helpers such as `tensor()`. Importing a rule
set must not import the toolchain: step modules are imported by name, inside workers only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from pydantic import BaseModel, ConfigDict


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
    plan: Callable[[Any, Any], Any]  # (its Declaration, a planning.PlanContext) -> a planning.Planned


@dataclass(frozen=True)
class StepKind:
    name: str  # e.g. "export"
    module: str  # e.g. "rules.export"; imported only in workers, hashed for the action key
    packages: tuple[str, ...]  # distributions whose versions enter the action key
    host_bound: bool = False  # its output is native code for this CPU: the CPU enters the key too


@dataclass(frozen=True)
class Flag:
    """A `build` option the rule set adds, read into a build-wide setting (PlanContext.setting)."""

    option: str  # e.g. "--sign-key"
    setting: str  # e.g. "sign_key"
    metavar: str
    help: str
    parse: Callable[[str], Any]  # the value as given -> the setting; ValueError says what is wrong


class Host(Protocol):
    """What a rule set's command may ask of the engine (cli.Host implements it)."""

    def build(self, patterns: list[str], cache_dir: Path, out_dir: Path, jobs: int) -> list[Path] | None:
        """Build into out_dir with that cache, showing progress: the placed artifacts, or None on failure."""


@dataclass(frozen=True)
class Command:
    """A subcommand the rule set adds (e.g. verify-release). run(args, console, host) -> exit status;
    the host (cli.Host) lets it find the workspace and build through the engine."""

    name: str
    help: str
    arguments: Callable[[Any], None]  # adds its arguments to an argparse parser
    run: Callable[[Any, Any, Any], int]


@dataclass(frozen=True)
class RuleSet:
    kinds: dict[str, TargetKind]
    steps: dict[str, StepKind]
    prelude: str = ""  # Starlark source evaluated before every BUILD.models and .star file
    flags: tuple[Flag, ...] = ()
    commands: tuple[Command, ...] = ()
    report: Callable[[dict], Any] | None = None  # a step's metrics -> what `show` prints (rich renderable)
    worker: str = "rules.worker"  # the module workers run: preload() once, run(StepRequest, workspace) per action
    rule_roots: tuple[str, ...] = field(default=("rules",))  # top-level packages of rule code

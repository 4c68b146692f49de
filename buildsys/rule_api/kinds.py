"""The contract between the engine and a set of rules (Buck2-style: the core knows no formats).

A rule set names its target kinds (the functions BUILD.models may call), its step kinds (the
actions workers run) and a Starlark prelude of value helpers such as `tensor()`. Importing a rule
set must not import the toolchain: a step module imports it inside run(), which only workers call.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Generic, Protocol, TypeVar

from pydantic import BaseModel

from .plan import Declaration, PlanContext, Planned

if TYPE_CHECKING:  # rich is the CLI's: the contract names its types without loading it
    from rich.console import Console, RenderableType

D = TypeVar("D", bound=Declaration)


@dataclass(frozen=True)
class TargetKind(Generic[D]):
    name: str  # the BUILD.models function, e.g. "executorch_program"
    decl: type[D]
    plan: Callable[[D, PlanContext], Planned]  # run in the engine at plan time: never the toolchain


@dataclass(frozen=True)
class StepKind:
    name: str  # e.g. "export"
    module: str  # e.g. "rules.steps.export": its run(ctx) runs in workers only; its source enters the action key
    config: type[BaseModel]  # what ctx.action() must be given for it, and what run() receives, validated
    packages: tuple[str, ...]  # distributions whose versions enter the action key
    host_bound: bool = False  # its output is native code for this CPU: the CPU enters the key too
    # A metric of its result that measures how much work the actions reading its outputs will have
    # (a program's op count): of two ready actions, the scheduler starts the heavier first.
    weight_metric: str | None = None
    # A module the local workers' fork server imports before it forks them, when the build plans an
    # action of this step: work every process would otherwise repeat once (the partitioner's warm-up).
    warm_up: str | None = None
    # It needs only the rule set's light imports (torch): local workers for it are forked while the
    # rest still imports. Its result must not depend on whether the rest was imported.
    light: bool = False


@dataclass(frozen=True)
class Flag:
    """A `build` option the rule set adds, read into a build-wide setting (PlanContext.setting)."""

    option: str  # e.g. "--sign-key"
    setting: str  # e.g. "sign_key"
    metavar: str
    help: str
    parse: Callable[[str], object]  # the value as given -> the setting; ValueError says what is wrong


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
    arguments: Callable[[argparse.ArgumentParser], None]  # adds its arguments to its parser
    run: Callable[[argparse.Namespace, "Console", Host], int]


@dataclass(frozen=True)
class RuleSet:
    kinds: dict[str, TargetKind]
    steps: dict[str, StepKind]
    worker: str  # the module workers run: preload() once, run(StepRequest, workspace) per action
    rule_roots: tuple[str, ...]  # top-level packages of rule code: what a step imports from them enters its key
    # Modules every worker imports before its first action (its preload's). Local workers are forked
    # from one server process that imported them once, instead of each importing them again.
    worker_imports: tuple[str, ...] = ()
    # Of those, what the light steps (StepKind.light) need: the first fork server imports these only.
    light_imports: tuple[str, ...] = ()
    prelude: str = ""  # Starlark source evaluated before every BUILD.models and .star file
    # The prelude's value helpers (`tensor`, `coreml`, ...) and the types they make: `modelbuild help`.
    helpers: dict[str, type[BaseModel]] = field(default_factory=dict)
    flags: tuple[Flag, ...] = ()
    commands: tuple[Command, ...] = ()
    report: Callable[[dict], "RenderableType"] | None = None  # a step's metrics -> what `show` prints

"""The rule API: everything of the engine a rule set may use, and nothing else.

`rules/` imports only this module of `buildsys`. It names what a rule set declares (target kinds
with their declaration types, step kinds), what a target kind's plan() sees and returns (the
planning context, sources, outputs, typed providers), what crosses the process boundary to a
worker (StepRequest, StepReply), and the host a rule set's own commands build through.
"""
from __future__ import annotations

from .errors import UserError
from .labels import Label
from .planning import METRICS, Action, Output, PlanContext, Planned, Provider, Sources
from .ruleset import Command, Declaration, Flag, Host, RuleSet, StepKind, TargetKind
from .step_protocol import FileInput, SourceFile, SourcesInput, StepReply, StepRequest
from .toolchain import toolchain
from .units import human_bytes

__all__ = [
    "METRICS", "Action", "Command", "Declaration", "FileInput", "Flag", "Host", "Label", "Output", "PlanContext", "Planned",
    "Provider", "RuleSet", "SourceFile", "Sources", "SourcesInput", "StepKind", "StepReply", "StepRequest", "TargetKind",
    "UserError", "human_bytes", "toolchain",
]

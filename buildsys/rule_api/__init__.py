"""The rule API: everything of the engine a rule set may use, and nothing else.

`rules/` imports only this package of `buildsys`. A leaf: importing it loads neither the Starlark
evaluator, nor the graph library, nor the planner, so a worker reads a request without them.
- kinds: what a rule set declares (target kinds with their declaration types, step kinds with
  their config types, flags, commands) and the host a rule set's own commands build through;
- plan: what a target kind's plan() sees and returns (the target, the planning context, sources,
  outputs, typed providers);
- wire: what crosses the process boundary to a worker (StepRequest, StepReply);
- ed25519: the one loader of signing keys (the remote cache's records, a release's provenance).
"""
from __future__ import annotations

from ..errors import UserError, did_you_mean
from ..labels import Label
from ..toolchain import toolchain
from ..units import human_bytes, parse_size
from .ed25519 import read_ed25519_key
from .kinds import Command, Flag, Host, RuleSet, StepKind, TargetKind
from .plan import (
    METRICS,
    Action,
    Declaration,
    Output,
    PlanContext,
    Planned,
    Provider,
    Sources,
    Target,
)
from .wire import FileInput, SourcesInput, StepReply, StepRequest

__all__ = [
    "METRICS", "Action", "Command", "Declaration", "FileInput", "Flag", "Host", "Label", "Output", "PlanContext", "Planned",
    "Provider", "RuleSet", "Sources", "SourcesInput", "StepKind", "StepReply", "StepRequest", "Target", "TargetKind",
    "UserError", "did_you_mean", "human_bytes", "parse_size", "read_ed25519_key", "toolchain",
]

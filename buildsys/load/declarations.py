"""Turn raw rule calls into validated Declarations, with errors that name file:line and field."""
from __future__ import annotations

from pydantic import ValidationError

from ..errors import UserError, describe_validation
from ..labels import Label
from ..rule_api import Declaration, RuleSet
from . import visibility
from .loader import RawTarget


def validate(raw: RawTarget, ruleset: RuleSet) -> Declaration:
    kind = ruleset.kinds[raw.kind]
    try:
        decl = kind.decl.model_validate(raw.attrs)
    except ValidationError as exc:
        lines = [f"{raw.kind}() {problem}" for problem in describe_validation(exc, kind.decl)]
        raise UserError("; ".join(lines), raw.location) from None
    try:
        Label.parse(f"//{raw.package}:{decl.name}")
    except UserError as err:
        raise UserError(f"{raw.kind}() has an invalid name: {err.message}", raw.location) from None
    try:
        visibility.check(decl.visibility, raw.package)
    except ValueError as err:
        raise UserError(f"{raw.kind}() field 'visibility': {err}", raw.location) from None
    return decl

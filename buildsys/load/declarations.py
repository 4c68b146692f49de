"""Turn raw rule calls into validated Declarations, with errors that name file:line and field."""
from __future__ import annotations

from pydantic import ValidationError

from ..errors import UserError, did_you_mean
from ..labels import Label
from ..rule_api import Declaration, RuleSet
from .loader import RawTarget


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _describe(err: dict, decl_type: type[Declaration], kind: str) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    field = _field_path(loc)
    if err["type"] == "extra_forbidden":
        name = str(loc[-1])
        if len(loc) == 1:
            allowed = sorted(decl_type.model_fields)
            return (
                f"{kind}() got an unexpected field '{name}'{did_you_mean(name, allowed)}; "
                f"allowed fields: {', '.join(allowed)}"
            )
        return f"{kind}() got an unexpected field '{field}'"
    if err["type"] == "missing":
        return f"{kind}() is missing the required field '{field}'"
    got = err.get("input")
    got_text = f" (got {got!r})" if not isinstance(got, dict) and len(repr(got)) < 80 else ""
    return f"{kind}() field '{field}': {err['msg']}{got_text}"


def validate(raw: RawTarget, ruleset: RuleSet) -> Declaration:
    kind = ruleset.kinds[raw.kind]
    try:
        decl = kind.decl.model_validate(raw.attrs)
    except ValidationError as exc:
        lines = [_describe(e, kind.decl, raw.kind) for e in exc.errors()]
        raise UserError("; ".join(lines), raw.location) from None
    try:
        Label.parse(f"//{raw.package}:{decl.name}")
    except UserError as err:
        raise UserError(f"{raw.kind}() has an invalid name: {err.message}", raw.location) from None
    return decl

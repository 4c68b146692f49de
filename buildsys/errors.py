"""User-facing errors: one clear paragraph, no traceback unless --verbose.

One vocabulary, each shape written once (as Pants keeps one exception class per kind of BUILD
error): a UserError says where and what; a TargetError is about one target, `kind() 'name': ...`
at its call site; a FlagError is about a flag's value, `--flag value: ...`; and a pydantic
ValidationError is told in BUILD.models terms by `describe_validation`, never in pydantic's."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for the hints only: the no-op's fast path imports this module, never pydantic
    from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class Location:
    """Where a declaration was made: the BUILD.models call site, and any macro frames."""

    file: str
    line: int
    via: tuple[str, ...] = ()  # "defs.star:12" frames between the call site and the rule

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return where + (f" (via {', '.join(self.via)})" if self.via else "")


class UserError(Exception):
    """A mistake in the user's input. `where` is a Location, a label or a path."""

    def __init__(self, message: str, where: object = None):
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where is not None else self.message


class TargetError(UserError):
    """A mistake in one target's declaration or plan: `kind() 'name': message`, at its call site."""

    def __init__(self, kind: str, name: str, message: str, where: object = None):
        super().__init__(f"{kind}() '{name}': {message}", where)
        self.kind, self.name, self.detail = kind, name, message


class FlagError(UserError):
    """A command-line flag given a value it cannot take: `--flag value: what is wrong; what is allowed`."""

    def __init__(self, option: str, value: object, problem: str):
        shown = "" if value is None or value == "" else f" {value}"
        super().__init__(f"{option}{shown}: {problem}")
        self.option = option


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def describe_validation(exc: ValidationError, model: type[BaseModel]) -> list[str]:
    """Each problem pydantic found, as a BUILD.models author reads it: which field, what is wrong,
    what is allowed (and the closest allowed name for a misspelt one)."""
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        field = _field_path(loc)
        if err["type"] == "extra_forbidden":
            name = str(loc[-1])
            if len(loc) == 1:
                allowed = sorted(model.model_fields)
                problems.append(f"got an unexpected field '{name}'{did_you_mean(name, allowed)}; "
                                f"allowed fields: {', '.join(allowed)}")
            else:
                problems.append(f"got an unexpected field '{field}'")
        elif err["type"] == "missing":
            problems.append(f"is missing the required field '{field}'")
        elif err["type"] in ("literal_error", "enum", "union_tag_invalid"):
            problems.append(_not_allowed(field, err))
        else:
            got = err.get("input")
            got_text = f" (got {got!r})" if not isinstance(got, dict) and len(repr(got)) < 80 else ""
            message = err["msg"].removeprefix("Value error, ").replace("Input should be ", "expected ", 1)
            problems.append(f"field '{field}': {message}{got_text}" if field else f"{message}{got_text}")
    return problems


def _not_allowed(field: str, err: dict) -> str:
    """A value outside its allowed set, in our words: the value, the closest allowed one, and all of them."""
    ctx = err.get("ctx", {})
    got = ctx["tag"] if err["type"] == "union_tag_invalid" else err.get("input")
    allowed = re.findall(r"'([^']*)'", ctx.get("expected_tags") or ctx.get("expected", ""))
    where = f"field '{field}'" if field else "a value"
    return f"{where}: {got!r} is not allowed{did_you_mean(str(got), allowed)}; allowed: {', '.join(allowed)}"


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""

"""`modelbuild help [NAME]`: what BUILD.models may call, read from the rule set's own Pydantic models,
so it cannot drift from what the loader accepts.

A field's one-line doc is its `Field(description=...)`, else the comment at the end of its line in
the class's source (where this codebase writes them).
"""
from __future__ import annotations

import inspect
import io
import tokenize
import types
import typing
from functools import lru_cache

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ..errors import UserError, did_you_mean
from ..rule_api import RuleSet

BUILTINS = {
    "load": 'load("//pkg:defs.star", "name", ...): bring in a macro or value from a .star file',
    "glob": "glob(include, exclude = []): the package's files matching the patterns",
    "package": "package(default_visibility = [...]): the visibility of the package's targets (first, once)",
    "package_name": "package_name(): the package being evaluated, e.g. \"models/vision\"",
}


@lru_cache(maxsize=None)
def _comments(cls: type) -> dict[str, str]:
    """field name -> the comment that ends its line in the class body."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    line_field: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        row, col = token.start
        if token.type == tokenize.NAME and col == 4 and row not in line_field:  # a field at class level
            line_field[row] = token.string
        elif token.type == tokenize.COMMENT and row in line_field:
            found.setdefault(line_field[row], token.string.lstrip("# ").strip())
    return found


def field_doc(model: type[BaseModel], name: str) -> str:
    info = model.model_fields[name]
    if info.description:
        return info.description
    for cls in model.__mro__:
        if isinstance(cls, type) and issubclass(cls, BaseModel) and name in getattr(cls, "__annotations__", {}):
            return _comments(cls).get(name, "")
    return ""


def type_text(annotation, helpers: dict[type, str]) -> str:
    """A field's type as a BUILD.models author writes values of it."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_text(args[0], helpers)
    if origin is typing.Literal:
        return " | ".join(repr(a).replace("'", '"') for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [type_text(a, helpers) for a in args if a is not type(None)]
        return " | ".join(parts) + (" | None" if type(None) in args else "")
    if origin in (list, tuple):
        return f"[{type_text(args[0], helpers)}, ...]" if args else "list"
    if origin is dict:
        return f"{{{type_text(args[0], helpers)}: {type_text(args[1], helpers)}}}" if args else "dict"
    if isinstance(annotation, type):
        if annotation in helpers:
            return f"{helpers[annotation]}(...)"
        return {str: "string", int: "int", float: "float", bool: "True | False"}.get(annotation, annotation.__name__)
    text = str(annotation).replace("typing.", "")
    return "a plain value (string, number, bool, list or dict of them)" if "JsonValue" in text else text


def _default(info) -> str:
    if info.is_required():
        return "required"
    value = info.default if info.default is not PydanticUndefined else info.default_factory()
    if isinstance(value, BaseModel):
        return "its defaults"
    return "default " + repr(value).replace("'", '"')


def summary(cls: type) -> str:
    """The first paragraph of the class's own docstring (not one it inherits), on one line."""
    doc = cls.__dict__.get("__doc__") or ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def describe(name: str, model: type[BaseModel], helpers: dict[type, str]) -> list[str]:
    doc = summary(model)
    lines = [f"{name}(...): {doc}" if doc else f"{name}(...)"]
    for field, info in model.model_fields.items():
        text = field_doc(model, field)
        lines.append(f"  {field}: {type_text(info.annotation, helpers)}  ({_default(info)})" + (f"  {text}" if text else ""))
    return lines


def run(ruleset: RuleSet, name: str | None) -> list[str]:
    helpers = {model: helper for helper, model in ruleset.helpers.items()}
    if name is None:
        lines = ["Rules (modelbuild help RULE for its fields):"]
        lines += [f"  {kind}: {summary(k.decl)}" for kind, k in sorted(ruleset.kinds.items())]
        lines.append("Values (modelbuild help NAME):")
        lines += [f"  {helper}(...): {summary(model)}" for helper, model in sorted(ruleset.helpers.items())]
        lines.append("Built in:")
        lines += [f"  {text}" for _, text in sorted(BUILTINS.items())]
        return lines
    if name in ruleset.kinds:
        return describe(name, ruleset.kinds[name].decl, helpers)
    if name in ruleset.helpers:
        return describe(name, ruleset.helpers[name], helpers)
    if name in BUILTINS:
        return [BUILTINS[name]]
    known = sorted([*ruleset.kinds, *ruleset.helpers, *BUILTINS])
    raise UserError(f"no rule, value or builtin '{name}'{did_you_mean(name, known)}; there are: {', '.join(known)}")

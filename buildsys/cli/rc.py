"""Options checked in once, as Bazel's .bazelrc: `.modelbuildrc` at the workspace root, and the
user's `~/.modelbuildrc`.

Each line is a command and its options, with `#` comments:

    build --remote-cache=https://cache.example/mb
    build:ci --remote-cache-key=ci.pub --keep-going

`build:ci` lines apply only with `--config ci`. An option's value comes from, in order: the command
line, the environment (MODELBUILD_REMOTE_CACHE and the like), the workspace's file, the user's file;
within a file a later line wins, and a `--config` group's lines come after the plain ones.
`build --announce-rc` says which options came from where. A line that does not parse (an unknown
command or option, a bad value, a target) is an error naming its file and line.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import FlagError, UserError, did_you_mean

RC_NAME = ".modelbuildrc"
# Options the environment can also set: there, it comes before the files.
ENV_FOR = {"remote_cache": "MODELBUILD_REMOTE_CACHE", "remote_cache_key": "MODELBUILD_REMOTE_CACHE_KEY",
           "cache_dir": "MODELBUILD_CACHE_DIR", "ray_address": "RAY_ADDRESS"}


@dataclass(frozen=True)
class Line:
    where: str  # file:line, as shown
    command: str
    config: str | None
    tokens: tuple[str, ...]


def user_rc() -> Path:
    return Path(os.path.expanduser("~")) / RC_NAME


def read(path: Path, shown: str) -> list[Line]:
    """The file's lines, or none if there is no file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {shown}: {err}") from None
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"{shown}:{number}"
        try:
            tokens = shlex.split(raw, comments=True)
        except ValueError as err:
            raise UserError(f"{err} (a line is a command and its options, e.g. build --keep-going)", where) from None
        if tokens:
            command, _, config = tokens[0].partition(":")
            lines.append(Line(where, command, config or None, tuple(tokens[1:])))
    return lines


def _explicit(parser: argparse.ArgumentParser, tokens: list[str] | tuple[str, ...]) -> list[str]:
    """The option dests these tokens set (not their defaults), in the parser's order."""
    found = []
    for action in parser._actions:
        for option in action.option_strings:
            if action.dest not in found and any(
                    t == option or t.startswith(option + "=") or (len(option) == 2 and t.startswith(option)
                                                                  and not t.startswith("--")) for t in tokens):
                found.append(action.dest)
    return found


def _parse(parser: argparse.ArgumentParser, line: Line) -> dict:
    """The options one line sets, checked by the command's own parser."""
    def refuse(message: str):
        raise UserError(f"{message} (in a '{line.command}' line)", line.where)

    saved, parser.error = parser.error, refuse
    try:
        namespace, unknown = parser.parse_known_args(list(line.tokens))
    finally:
        parser.error = saved
    if unknown:
        options = [o for a in parser._actions for o in a.option_strings]
        hint = did_you_mean(unknown[0].split("=")[0], options)
        raise UserError(f"unknown option '{unknown[0]}' for '{line.command}'{hint}; `modelbuild {line.command} --help` "
                        f"lists its options", line.where)
    if getattr(namespace, "patterns", None):
        raise UserError(f"an rc file gives options, not targets (got {namespace.patterns[0]!r})", line.where)
    return {dest: getattr(namespace, dest) for dest in _explicit(parser, line.tokens) if dest not in ("config", "help")}


def apply(args: argparse.Namespace, argv: list[str], commands: dict[str, argparse.ArgumentParser],
          root: Path | None) -> list[str]:
    """Set on args what the rc files give and neither the command line nor the environment does;
    returns what --announce-rc prints."""
    sources = [(user_rc(), f"~/{RC_NAME}")] + ([(root / RC_NAME, RC_NAME)] if root is not None else [])
    lines = [line for path, shown in sources for line in read(path, shown)]
    for line in lines:
        if line.command not in commands:
            raise UserError(f"unknown command '{line.command}'; lines start with one of: {', '.join(sorted(commands))}",
                            line.where)
    configs = list(getattr(args, "config", []) or [])
    for name in configs:
        if not any(line.command == args.command and line.config == name for line in lines):
            raise FlagError("--config", name, f"no '{args.command}:{name}' line in {RC_NAME} or ~/{RC_NAME}")
    parsed = [(line, _parse(commands[line.command], line)) for line in lines]  # every line checked, used or not
    ordered = []
    for path, shown in sources:  # the user's file, then the workspace's; in each, plain lines, then --config's
        mine = [(line, values) for line, values in parsed if line.where.rsplit(":", 1)[0] == shown]
        ordered += [(l, v) for l, v in mine if l.command == args.command and l.config is None]
        ordered += [(l, v) for name in configs for l, v in mine if l.command == args.command and l.config == name]
    explicit = _explicit(commands[args.command], argv)
    chosen: dict[str, tuple[object, Line]] = {}
    for line, values in ordered:
        for dest, value in values.items():
            chosen[dest] = (value, line)
    announced = []
    for dest, (value, line) in chosen.items():
        said = f"{line.where} ({line.command}{':' + line.config if line.config else ''}): {_option(commands[line.command], dest, value)}"
        if dest in explicit:
            announced.append(f"{said}, overridden by the command line")
        elif dest in ENV_FOR and os.environ.get(ENV_FOR[dest]):
            announced.append(f"{said}, overridden by ${ENV_FOR[dest]}")
        else:
            setattr(args, dest, value)
            announced.append(said)
    return announced


def _option(parser: argparse.ArgumentParser, dest: str, value) -> str:
    """--keep-going, --jobs=1: the option as one would write it."""
    action = next(a for a in parser._actions if a.dest == dest and a.option_strings)
    name = max(action.option_strings, key=len)
    return name if action.nargs == 0 else f"{name}={value}"


def announce(lines: list[str]) -> None:
    for text in lines or ["no options from an rc file"]:
        print(f"INFO: {text}", file=sys.stderr)

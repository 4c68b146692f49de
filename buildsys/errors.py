"""User-facing errors: one clear paragraph, no traceback unless --verbose."""
from __future__ import annotations

import difflib
from dataclasses import dataclass


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


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""

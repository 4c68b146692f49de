"""Labels (`//pkg:name`) and target patterns (`//...`, `//pkg/...`, `//pkg:all`)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UserError

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=,@~-]*$")
_PACKAGE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.+=,@~-]*(/[A-Za-z0-9_][A-Za-z0-9_.+=,@~-]*)*)?$")


def _check_package(package: str, text: str) -> str:
    if not _PACKAGE.match(package):
        raise UserError(f"invalid package path in label '{text}'; expected //dir/subdir:name")
    return package


@dataclass(frozen=True, order=True)
class Label:
    package: str  # workspace-relative directory, "" for the root package
    name: str

    @classmethod
    def parse(cls, text: str, current_package: str | None = None) -> "Label":
        """Parse `//pkg:name`, `//pkg` (name = last dir) or, inside a package, `:name`."""
        if not isinstance(text, str) or not text:
            raise UserError(f"expected a label such as '//pkg:name', got {text!r}")
        if text.startswith("//"):
            body = text[2:]
            package, sep, name = body.partition(":")
            if not sep:
                name = package.rsplit("/", 1)[-1]
                if not name:
                    raise UserError(f"label '{text}' names no target; write '//:name'")
        elif text.startswith(":") or current_package is not None and "/" not in text and ":" not in text:
            if current_package is None:
                raise UserError(f"relative label '{text}' used outside a package; write '//pkg{text}'")
            package, name = current_package, text.lstrip(":")
        else:
            raise UserError(f"invalid label '{text}'; expected '//pkg:name' or ':name'")
        _check_package(package, text)
        if not _NAME.match(name):
            raise UserError(f"invalid target name in label '{text}'; names use letters, digits and _.+=,@~-")
        return cls(package, name)

    def __str__(self) -> str:
        return f"//{self.package}:{self.name}"


def absolute(text: str, here: str) -> str:
    """A pattern or label as typed on the command line, resolved against `here`, the package of the
    current directory, as Bazel does: `:name` and `name` are targets of that package, `...` is it
    and everything beneath, `sub:name` and `sub/...` are beneath it. `//...` forms stay as they are."""
    if text.startswith("//"):
        return text
    base = f"//{here}"
    if text.startswith(":"):
        return base + text
    if text == "...":
        return f"{base}/..." if here else "//..."
    if ":" in text or "/" in text:
        return f"{base}/{text}" if here else f"//{text}"
    return f"{base}:{text}"


@dataclass(frozen=True)
class Pattern:
    """A set of targets: one label, all targets of a package, or all packages beneath a dir."""

    package: str
    name: str | None  # None: every target of the package(s)
    recursive: bool  # `/...`: the package and every package beneath it

    @classmethod
    def parse(cls, text: str) -> "Pattern":
        if not text.startswith("//"):
            raise UserError(
                f"invalid target pattern '{text}'; expected //..., //pkg/..., //pkg:all or //pkg:name"
            )
        body = text[2:]
        if body == "..." or body.endswith("/..."):
            package = body[:-3].rstrip("/")
            return cls(_check_package(package, text), None, True)
        package, sep, name = body.partition(":")
        _check_package(package, text)
        if sep and name in ("all", "*"):
            return cls(package, None, False)
        label = Label.parse(text)
        return cls(label.package, label.name, False)

    def covers_package(self, package: str) -> bool:
        if not self.recursive:
            return package == self.package
        return self.package == "" or package == self.package or package.startswith(self.package + "/")

    def matches(self, label: Label) -> bool:
        return self.covers_package(label.package) and (self.name is None or self.name == label.name)

    def __str__(self) -> str:
        if self.recursive:
            return f"//{self.package + '/' if self.package else ''}..."
        return f"//{self.package}:{self.name or 'all'}"

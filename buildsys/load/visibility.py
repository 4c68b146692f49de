"""Visibility, as in Bazel: who may depend on a target.

A target's `visibility` lists what may depend on it: "//visibility:public" (the default, so a
workspace without any visibility works as before), "//visibility:private" (its own package),
"//pkg:__pkg__" (that package), "//pkg:__subpackages__" or "//pkg/..." (that package and every
package beneath it). A package's BUILD.models may set the default for its targets with
package(default_visibility = [...]). A target is always visible in its own package.
"""
from __future__ import annotations

import re

from ..errors import UserError

PUBLIC, PRIVATE = "//visibility:public", "//visibility:private"
_FORM = re.compile(r"^//([A-Za-z0-9_./+=,@~-]*?)(?::(__pkg__|__subpackages__)|/\.\.\.|(?<=^//)\.\.\.)$")
ALLOWED = ('"//visibility:public", "//visibility:private", "//pkg:__pkg__", "//pkg:__subpackages__" '
           'or "//pkg/..." (":__pkg__" is the target\'s own package)')


def parse(spec: str, package: str) -> tuple[str, bool] | None:
    """(package, with the packages beneath it) that one visibility entry grants, or None for
    public; ValueError names the allowed forms."""
    if spec == PUBLIC:
        return None
    if spec == PRIVATE:
        return package, False
    if spec.startswith(":"):
        spec = f"//{package}{spec}"
    match = _FORM.match(spec) if isinstance(spec, str) else None
    if not match:
        raise ValueError(f"visibility entry {spec!r} is not one of {ALLOWED}")
    return match.group(1).rstrip("/"), match.group(2) != "__pkg__"


def check(entries: list[str], package: str) -> None:
    for spec in entries:
        parse(spec, package)


def allows(entries: list[str], owner: str, user: str) -> bool:
    """Whether a target of package `owner` with these entries may be a dependency of one in `user`."""
    if user == owner:
        return True
    for spec in entries:
        granted = parse(spec, owner)
        if granted is None:
            return True
        pkg, beneath = granted
        if user == pkg or (beneath and (pkg == "" or user.startswith(pkg + "/"))):
            return True
    return False


def refusal(user_label, dep_label, entries: list[str], declared_at) -> UserError:
    """'//a:x' may not depend on '//b:y': where each is, what y allows, and what would allow x."""
    shown = ", ".join(f'"{e}"' for e in entries) or f'"{PRIVATE}"'
    return UserError(f"'{user_label}' depends on '{dep_label}', which is not visible to it: '{dep_label}' (declared "
                     f"at {declared_at}) has visibility = [{shown}]. To allow it, add \"//{user_label.package}:__pkg__\" "
                     f"to that visibility (or the package's default_visibility)")

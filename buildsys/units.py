"""Sizes as people read them, and write them."""
from __future__ import annotations

import re

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*$", re.IGNORECASE)
SIZE_EXAMPLES = "500M, 2MB, 1.5GB or 10GiB"


def count(n: int, noun: str) -> str:
    """'1 target', '2 targets'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def parse_size(text: str) -> int:
    """'500M', '1.5GB', '10GiB', '123': decimal units (as sizes are shown), binary with 'i'.
    ValueError names what is allowed."""
    match = _SIZE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"expected a size such as {SIZE_EXAMPLES}")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


def human_bytes(n: int) -> str:
    """1.2 MB: decimal units, as file managers and app stores show sizes."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"

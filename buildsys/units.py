"""Sizes as people read them."""
from __future__ import annotations


def human_bytes(n: int) -> str:
    """1.2 MB: decimal units, as file managers and app stores show sizes."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"

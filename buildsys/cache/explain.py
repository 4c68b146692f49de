"""Why an action runs (ninja's `-d explain`): the key material it was last built with, read
against today's (keys.material), named field by field."""
from __future__ import annotations


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def reasons(before: dict | None, now: dict) -> list[str]:
    if before is None:
        return ["never built before (no earlier key recorded for this target and step)"]
    out = []
    if before["rule"] != now["rule"]:
        out.append(f"the {now['step']} rule's source changed")
    for name in sorted(set(before["inputs"]) | set(now["inputs"])):
        old, new = before["inputs"].get(name), now["inputs"].get(name)
        if old == new:
            continue
        if isinstance(old, list) and isinstance(new, list):
            o, n = dict(map(tuple, old)), dict(map(tuple, new))
            changed = sorted(p for p in set(o) | set(n) if o.get(p) != n.get(p))
            out.append(f"input '{name}' changed: {', '.join(changed)}")
        else:
            out.append(f"input '{name}' changed (its producer's output is different)")
    old_cfg, new_cfg = _flatten(before["config"]), _flatten(now["config"])
    for field in sorted(set(old_cfg) | set(new_cfg)):
        if old_cfg.get(field) != new_cfg.get(field):
            out.append(f"config {field}: {old_cfg.get(field)!r} -> {new_cfg.get(field)!r}")
    for tool in sorted(set(before["toolchain"]) | set(now["toolchain"])):
        if before["toolchain"].get(tool) != now["toolchain"].get(tool):
            out.append(f"toolchain {tool}: {before['toolchain'].get(tool)} -> {now['toolchain'].get(tool)}")
    return out or ["the cached result was missing or incomplete in the cache"]

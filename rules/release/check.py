"""`modelbuild verify-release`: is an archive intact, and is it what its manifest and its
provenance say? One line per problem: which file, the digest expected and the one found."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..steps.release import MANIFEST, PROVENANCE, SCHEMA
from . import archive as release_archive
from . import provenance


@dataclass
class Checked:
    files: dict[str, bytes]
    manifest: dict = field(default_factory=dict)
    signed: bool = False
    problems: list[str] = field(default_factory=list)


def _expect(problems: list[str], name: str, what: str, expected: str | None, actual: str | None) -> None:
    if expected is None:
        problems.append(f"{name}: an extra file, not listed in {what}")
    elif actual is None:
        problems.append(f"{name}: missing from the archive ({what} lists it with sha256 {expected})")
    elif expected != actual:
        problems.append(f"{name}: sha256 {actual} does not match {what}, which expects {expected}")


def check(path: Path, public_key: Path | None = None) -> Checked:
    """Read the archive and compare every file with the manifest and the provenance's subjects.
    Raises ValueError for what is not a release archive at all (or an unreadable key)."""
    key = provenance.load_public_key(public_key) if public_key is not None else None
    try:
        files, odd = release_archive.read(path)
    except release_archive.BadArchive as err:
        raise ValueError(str(err)) from None
    out = Checked(files)
    out.problems += [f"{entry}: a release holds only regular files and directories" for entry in odd]
    actual = {name: release_archive.sha256(data) for name, data in files.items()}
    if MANIFEST not in files:
        raise ValueError(f"{path} holds no {MANIFEST}: it is not a modelbuild release")
    try:
        out.manifest = json.loads(files[MANIFEST])
        listed = {name: f["sha256"] for name, f in out.manifest["files"].items()}
        if out.manifest.get("schema") != SCHEMA:
            raise ValueError(f"schema {out.manifest.get('schema')!r}, expected {SCHEMA!r}")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: {MANIFEST} is not a valid release manifest ({err!r})") from None
    for name in sorted((set(listed) | set(actual)) - {MANIFEST, PROVENANCE}):
        if listed.get(name) != actual.get(name):
            _expect(out.problems, name, MANIFEST, listed.get(name), actual.get(name))
    for item in out.manifest.get("artifacts", []):  # the per-artifact digests agree with the file list
        if "sha256" in item and item["sha256"] != listed.get(item.get("path")):
            out.problems.append(f"{item.get('path')}: {MANIFEST} gives two digests for it ({item['sha256']} and "
                                f"{listed.get(item.get('path'))})")
    if PROVENANCE not in files:
        out.problems.append(f"{PROVENANCE}: missing from the archive")
        return out
    try:
        statement, out.signed = provenance.open_provenance(files[PROVENANCE], key)
        subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    except ValueError as err:
        out.problems.append(str(err))
        return out
    except (KeyError, TypeError) as err:
        out.problems.append(f"{PROVENANCE}: not an in-toto statement with subjects ({err!r})")
        return out
    for name in sorted((set(subjects) | set(actual)) - {PROVENANCE}):
        if subjects.get(name) != actual.get(name):
            _expect(out.problems, name, f"{PROVENANCE} (its subjects)", subjects.get(name), actual.get(name))
    return out


def compare_rebuilt(original: dict[str, bytes], rebuilt: dict[str, bytes], signed: bool) -> list[str]:
    """Every file of the original against the rebuild (a signed provenance is not rebuilt)."""
    problems = []
    skip = {PROVENANCE} if signed else set()
    for name in sorted((set(original) | set(rebuilt)) - skip):
        a = release_archive.sha256(original[name]) if name in original else None
        b = release_archive.sha256(rebuilt[name]) if name in rebuilt else None
        if a != b:
            if a is None:
                problems.append(f"{name}: the rebuild has it, the archive does not")
            elif b is None:
                problems.append(f"{name}: the rebuild does not have it")
            else:
                problems.append(f"{name}: rebuilt with sha256 {b}, the archive holds {a}")
    return problems


def summary_rows(manifest: dict) -> list[tuple[str, str, str, str]]:
    """(path, format, bytes, check) per artifact, for the listing verify-release prints."""
    rows = []
    for item in manifest.get("artifacts", []):
        verification = item.get("verification", {})
        if verification.get("passed") is None:
            check = "not verified"
        elif verification.get("numeric"):
            n = len(verification.get("cases", []))
            check = f"numeric, {n} case{'' if n == 1 else 's'}"
        else:
            check = "structural"
        if "bundle" in item:
            b = item["bundle"]
            check += f"; bundle {'checked' if b.get('checked') else 'for the device'}"
        rows.append((item.get("path", "?"), item.get("format", "?"), f"{item.get('size', 0):,}", check))
    return rows

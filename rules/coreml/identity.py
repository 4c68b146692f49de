"""Content-derived identities for Core ML packages, so that the same model gives the same bytes.

coremltools writes three things into an .mlpackage that do not come from the model:
- Manifest.json names each item (model.mlmodel, the weights directory) by a random UUID, drawn
  by libmodelpackage whenever a package is created;
- model.mlmodel is a protobuf serialized in the order its maps happen to iterate in this
  process (the MIL program's functions and attributes are maps);
- the user-defined metadata `com.github.apple.coremltools.conversion_date` is `date.today()`,
  which depends on the day and on TZ.
`normalize_package` rewrites a saved package in place: the spec without the conversion date,
serialized with sorted maps, and each item named by a UUID derived from its path and content.
No date can be derived from the content, and nothing reads this one (not coremltools, not Core
ML), so the key is dropped; the spec is otherwise unchanged and the package loads as before.

Imports coremltools inside functions: the engine may import rules/ freely.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

CONVERSION_DATE = "com.github.apple.coremltools.conversion_date"
MANIFEST = "Manifest.json"
DATA = "Data"
# The namespace of every UUID modelbuild derives: uuid5(NAMESPACE, what it names).
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "modelbuild:coreml")


def content_digest(path: Path) -> str:
    """SHA-256 of a file, or of a directory as its sorted (relative path, file digest) pairs."""
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    files = sorted(p for p in path.rglob("*") if p.is_file())
    listing = [[p.relative_to(path).as_posix(), content_digest(p)] for p in files]
    return hashlib.sha256(json.dumps(listing, separators=(",", ":")).encode()).hexdigest()


def content_uuid(*parts: str) -> str:
    """A UUID (version 5) naming these parts: the same parts always give the same UUID."""
    return str(uuid.uuid5(NAMESPACE, "\0".join(parts)))


def normalize_spec(spec_path: Path) -> None:
    """Drop the conversion date from a serialized Core ML spec and write it with sorted maps."""
    from coremltools.proto import Model_pb2

    spec = Model_pb2.Model()
    spec.ParseFromString(spec_path.read_bytes())
    user = spec.description.metadata.userDefined
    if CONVERSION_DATE in user:
        del user[CONVERSION_DATE]
    spec_path.write_bytes(spec.SerializeToString(deterministic=True))


def normalize_package(package: Path) -> None:
    """Rewrite a saved .mlpackage in place so that its bytes depend only on its content."""
    manifest_path = package / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    entries = manifest["itemInfoEntries"]
    root = manifest["rootModelIdentifier"]
    normalize_spec(package / DATA / entries[root]["path"])
    renamed = {
        old: content_uuid(item["path"], content_digest(package / DATA / item["path"]))
        for old, item in entries.items()
    }
    manifest["itemInfoEntries"] = {renamed[old]: item for old, item in entries.items()}
    manifest["rootModelIdentifier"] = renamed[root]
    # libmodelpackage's own layout: sorted keys, four-space indent, a final newline
    manifest_path.write_text(json.dumps(manifest, indent=4, sort_keys=True) + "\n")

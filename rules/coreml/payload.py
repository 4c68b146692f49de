"""The Core ML delegate's payload in a .pte, made byte-reproducible.

ExecuTorch's `CoreMLBackend.preprocess` saves the converted model as a directory
`lowered_module/{model.mlpackage, metadata.json, debug_info.json}` and flattens it into the
payload (`executorchcoreml.flatten_directory_contents`). Besides what coreml_identity fixes in
the package, two things in it vary from build to build:
- metadata.json's `identifier` is "executorch_" + uuid4 (the runtime caches the compiled model
  on the device under it);
- the flattening lists each directory in readdir order (through a std::unordered_map filled in
  that order), and readdir order belongs to the file system: ext4 orders entries by a hash
  seeded per file system, tmpfs by creation. The same tree flattens to other bytes elsewhere.
`normalized_payload` unflattens a payload with ExecuTorch's own reader, normalizes the package,
names the module by a UUID derived from its content, and flattens the tree again with each
directory's entries in sorted order. The result is read back with ExecuTorch's reader, which
must give the same files.

The format (ExecuTorch's inmemoryfs): the files' bytes back to back, each at an offset aligned
to `alignment`, then the metadata as JSON with its bytes reversed: {"nodes": [...]} in post
order (children before their directory, the root last), each node {"children": {name: index},
"dataRegion": {"offset", "size"}, "kind": 0 for a file, 1 for a directory, "name"}, written
compact with sorted keys (nlohmann::json). ExecuTorch aligns to 1 byte below 1 GiB and to the
build host's page size above; this module uses 16 KiB there, a multiple of the pages of every
host and device, so that the bytes do not depend on the host.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .identity import content_digest, content_uuid, normalize_package

METADATA = "metadata.json"
PACKAGE = "model.mlpackage"
LARGE = 1 << 30  # ExecuTorch's threshold for page-aligned payloads
LARGE_ALIGNMENT = 1 << 14
FILE, DIRECTORY = 0, 1


def serialize(nodes: list[dict], contents: list[bytes | None], alignment: int = 1) -> bytes:
    """The payload of nodes in this order ({"name", "kind", "children"}; contents[i] is file i's
    bytes, None for a directory): the data regions are laid out here."""
    out, offset, meta = bytearray(), 0, []
    for node, data in zip(nodes, contents):
        region = {"offset": 0, "size": 0}
        if node["kind"] == FILE:
            start = -(-offset // alignment) * alignment
            out += bytes(start - offset) + data
            region, offset = {"offset": start, "size": len(data)}, start + len(data)
        meta.append({**node, "dataRegion": region})
    out += bytes(-(-offset // alignment) * alignment - offset)
    text = json.dumps({"nodes": meta}, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return bytes(out) + text.encode()[::-1]


def flatten(root: Path) -> bytes:
    """A directory as a payload, each directory's entries in sorted order."""
    nodes, contents = [], []

    def visit(path: Path) -> int:
        if path.is_dir():
            children = {child.name: visit(child) for child in sorted(path.iterdir(), key=lambda p: p.name)}
            nodes.append({"name": path.name, "kind": DIRECTORY, "children": children})
            contents.append(None)
        else:
            nodes.append({"name": path.name, "kind": FILE, "children": {}})
            contents.append(path.read_bytes())
        return len(nodes) - 1

    visit(root)
    size = sum(len(c) for c in contents if c is not None)
    return serialize(nodes, contents, LARGE_ALIGNMENT if size > LARGE else 1)


def parse(payload: bytes) -> tuple[list[dict], list[bytes | None]]:
    """The nodes of a payload in its order, and each file's bytes (the inverse of serialize)."""
    meta, _ = json.JSONDecoder().raw_decode(payload[::-1].decode("utf-8", errors="replace"))
    nodes, contents = [], []
    for node in meta["nodes"]:
        region = node["dataRegion"]
        nodes.append({"name": node["name"], "kind": node["kind"], "children": node["children"]})
        start = region["offset"]
        contents.append(payload[start:start + region["size"]] if node["kind"] == FILE else None)
    return nodes, contents


def _unflatten(payload: bytes, into: Path) -> Path:
    """The payload's tree written under `into` by ExecuTorch's own reader; returns its root."""
    from executorch.backends.apple.coreml import executorchcoreml

    before = set(into.iterdir())
    if not executorchcoreml.unflatten_directory_contents(payload, str(into)):
        raise RuntimeError("ExecuTorch could not read the Core ML payload it wrote")
    (root,) = set(into.iterdir()) - before
    return root


def name_module(root: Path) -> None:
    """Set metadata.json's identifier to a UUID derived from the module's content."""
    path = root / METADATA
    meta = json.loads(path.read_text())
    meta["identifier"] = ""
    path.write_text(json.dumps(meta))
    meta["identifier"] = "executorch_" + content_uuid("coreml_delegate", content_digest(root))
    path.write_text(json.dumps(meta))  # as ExecuTorch writes it: json.dumps of the dataclass


def normalized_payload(payload: bytes) -> bytes:
    """The same Core ML module as `payload`, in bytes that depend only on its content."""
    work = Path(tempfile.mkdtemp(prefix="modelbuild-coreml-"))
    try:
        (work / "a").mkdir()
        (work / "b").mkdir()
        root = _unflatten(payload, work / "a")
        if (root / PACKAGE).is_dir():
            normalize_package(root / PACKAGE)
        if (root / METADATA).is_file():
            name_module(root)
        result = flatten(root)
        if content_digest(_unflatten(result, work / "b")) != content_digest(root):
            raise RuntimeError("ExecuTorch reads the normalized Core ML payload back as other files")
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def reproducible_coreml_payloads():
    """Within this block, ExecuTorch's Core ML backend returns normalized payloads.

    A narrow patch of `CoreMLBackend.preprocess`, undone on exit: the backend draws its
    identifier and flattens its directory inside preprocess, with no option for either, and
    the lowering API looks the backend up by class name, so there is no hook to put a
    post-processing step in. The patched method calls the original and rewrites its bytes.
    """
    import dataclasses

    from executorch.backends.apple.coreml.compiler import CoreMLBackend

    original = CoreMLBackend.__dict__["preprocess"]

    def preprocess(edge_program, compile_specs):
        result = original.__func__(edge_program, compile_specs)
        return dataclasses.replace(result, processed_bytes=normalized_payload(result.processed_bytes))

    CoreMLBackend.preprocess = staticmethod(preprocess)
    try:
        yield
    finally:
        CoreMLBackend.preprocess = original

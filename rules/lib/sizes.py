"""What an artifact's bytes are: its total, its constant data (weights) and each delegate's payload.

Read from the artifact with each format's own index, never by running it. Every format gives
`total_bytes` and `constant_bytes` (every weight byte, wherever it lives); the other keys name
the format's parts:

- .pte: `program_bytes` (the flatbuffer: instructions, values, metadata), `delegates` (payload
  bytes per backend id) and `delegate_constant_bytes` (the weights inside those payloads).
  Portable programs keep weights in the constant segment; XNNPACK (executorch 1.x) keeps them in
  named data segments next to its payload, which holds only the XNNPACK graph; a Core ML payload
  is a whole .mlpackage with its weight.bin inside.
- .pt2: `program_bytes` (the serialized graphs) and `sample_inputs_bytes`; the weights and
  constants are the zip entries its weights and constants configs name.
- .onnx: `graph_bytes` (everything but the initializers, which are the weights).
- .aoti.pt2: `library_bytes` (compiled .so); the weights are embedded in the .so, or in a
  `weights.o` object in a source package, as the generated wrapper's `constants_info_` records.
- .mlpackage: `model_bytes` (the model spec); the weights are the package's weights item.
"""
from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path


def artifact_sizes(path: Path, fmt: str) -> dict:
    path = Path(path)
    return {"pte": pte_sizes, "pt2": pt2_sizes, "onnx": onnx_sizes, "aoti": aoti_sizes,
            "mlpackage": mlpackage_sizes}[fmt](path)


def pte_sizes(path: Path) -> dict:
    from executorch.exir._serialize._program import (
        _flatbuffer_to_program,
        _get_extended_header,
    )
    from executorch.exir.schema import DataLocation

    data = path.read_bytes()
    header = _get_extended_header(data)
    program_size = header.program_size if header else len(data)
    program = _flatbuffer_to_program(data[:program_size])
    base = header.segment_base_offset if header else 0

    def segment(index: int) -> bytes:
        seg = program.segments[index]
        return data[base + seg.offset: base + seg.offset + seg.size]

    constants = sum(len(b.storage) for b in program.constant_buffer)  # inline (old programs)
    if program.constant_segment.offsets:  # one segment holds every non-delegated constant
        constants += program.segments[program.constant_segment.segment_index].size
    # Named data: blobs backends share by key. XNNPACK puts its weights here (one segment per
    # tensor); keys that share a segment are counted once.
    constants += sum(program.segments[i].size for i in {n.segment_index for n in program.named_data or []})

    delegates: dict[str, int] = {}
    inner: dict[str, int] = {}
    for plan in program.execution_plan:
        for delegate in plan.delegates:
            ref = delegate.processed
            payload = (program.backend_delegate_data[ref.index].data if ref.location == DataLocation.INLINE
                       else segment(ref.index))
            delegates[delegate.id] = delegates.get(delegate.id, 0) + len(payload)
            weights = _payload_weights(delegate.id, payload)
            if weights:
                inner[delegate.id] = inner.get(delegate.id, 0) + weights
    return {"total_bytes": len(data), "program_bytes": program_size, "constant_bytes": constants + sum(inner.values()),
            "delegates": delegates, "delegate_constant_bytes": inner}


def _payload_weights(backend: str, payload: bytes) -> int:
    """Weight bytes inside a delegate payload, for the backends whose payload format we can read."""
    if backend == "XnnpackBackend":  # a header, the XNNPACK graph, then constant data (none in 1.x)
        from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import (
            XNNHeader,
        )

        try:
            header = XNNHeader.from_bytes(payload[:XNNHeader.EXPECTED_LENGTH])
        except ValueError:  # a bare flatbuffer, no header
            return 0
        return header.constant_data_size if header.is_valid() else 0
    if backend == "CoreMLBackend":  # a flattened directory holding the .mlpackage (or .mlmodelc)
        import tempfile

        from executorch.backends.apple.coreml import executorchcoreml

        with tempfile.TemporaryDirectory() as tmp:
            if not executorchcoreml.unflatten_directory_contents(payload, tmp):
                return 0
            packages = sorted(Path(tmp).rglob("*.mlpackage"))
            if packages:
                return sum(mlpackage_sizes(p)["constant_bytes"] for p in packages)
            return sum(f.stat().st_size for f in Path(tmp).rglob("weights/*") if f.is_file())  # compiled .mlmodelc
    return 0


def pt2_sizes(path: Path) -> dict:
    """torch.export.save's zip: <root>/models/*.json (graphs), <root>/data/weights and
    <root>/data/constants (one entry per tensor, named by each directory's *_config.json),
    <root>/data/sample_inputs."""
    with zipfile.ZipFile(path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        stored = set()
        for name in infos:
            folder, _, file = name.rpartition("/")
            if folder.endswith(("data/weights", "data/constants")) and file.endswith("_config.json"):
                stored |= {f"{folder}/{entry['path_name']}" for entry in json.loads(zf.read(name))["config"].values()}
        total = path.stat().st_size

    def part(folder: str) -> int:
        return sum(i.file_size for n, i in infos.items() if n.split("/")[1:2] == [folder])

    return {"total_bytes": total, "constant_bytes": sum(infos[n].file_size for n in stored if n in infos),
            "program_bytes": part("models"),
            "sample_inputs_bytes": sum(i.file_size for n, i in infos.items() if "/data/sample_inputs/" in n)}


def onnx_sizes(path: Path) -> dict:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    inline = external = 0
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:  # bytes in a side file
            external += int({e.key: e.value for e in tensor.external_data}.get("length", 0))
        elif tensor.HasField("raw_data"):
            inline += len(tensor.raw_data)
        else:  # typed fields (float_data, int64_data, ...)
            inline += numpy_helper.to_array(tensor).nbytes
    total = path.stat().st_size
    return {"total_bytes": total, "constant_bytes": inline + external, "graph_bytes": total - inline}


_CONSTANT_SIZE = re.compile(rb"constants_info_\[(\d+)\]\.data_size = (\d+);")


def aoti_sizes(path: Path) -> dict:
    """AOTInductor embeds the weights as one blob (in the .so, or in a weights.o next to the
    C++ source); the generated wrapper lists each constant's embedded size (aligned to 64)."""
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        constants = 0
        for info in infos:
            if info.filename.endswith("wrapper.cpp"):
                constants += sum(int(size) for size in dict(_CONSTANT_SIZE.findall(zf.read(info))).values())
            elif "/data/weights/" in info.filename and not info.filename.endswith(".json"):  # weights kept on disk
                constants += info.file_size
        library = sum(i.file_size for i in infos if i.filename.endswith(".so"))
    return {"total_bytes": path.stat().st_size, "constant_bytes": constants, "library_bytes": library}


def mlpackage_sizes(path: Path) -> dict:
    """The package's Manifest.json names its items: the root model spec and the weights."""
    manifest = json.loads((path / "Manifest.json").read_text())
    items = manifest["itemInfoEntries"]
    data = path / "Data"

    def item_bytes(item: dict) -> int:
        where = data / item["path"]
        return where.stat().st_size if where.is_file() else _tree_bytes(where)

    root = items.get(manifest.get("rootModelIdentifier"), {})
    weights = [i for i in items.values() if i.get("name") == "weights"]
    return {"total_bytes": _tree_bytes(path), "constant_bytes": sum(item_bytes(i) for i in weights),
            "model_bytes": item_bytes(root) if root else 0}


def _tree_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())

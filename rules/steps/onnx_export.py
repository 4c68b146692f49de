"""Step `onnx_export`: convert an exported program (.pt2) to an ONNX model (.onnx).

torch.onnx's dynamo exporter takes the loaded ExportedProgram as is (no eager model, no example
inputs needed). Dynamic dims stay symbolic; torch names them after its own symbols (`s77`), so
the model's dim names are passed in `dynamic_shapes` to name the axes as BUILD.models does.

The bytes must not depend on where the build ran: node metadata carries stack traces, whose
paths are made relative to the workspace and to the Python path (site-packages), or the
metadata is dropped with `strip_metadata`.
"""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ..lib.programs import load_program
from ..toolchain_errors import explain
from ..values import DimSpec, Spec

_TWO_GB = 2**31 - 2**20  # protobuf's limit, less room for the graph itself


class OnnxExportConfig(Spec):
    # ai.onnx opset. torch 2.13 defaults to 20; its op library is written for 18 and newer
    # (lower ones go through ONNX's version converter, which can fail), 23 is its maximum.
    opset: Annotated[int, Field(ge=18, le=23)] = 20
    optimize: bool = True  # onnxscript's optimizer: constant folding, dead code, fusions
    # The model's dynamic_shapes (as in ExportConfig), used to name the ONNX axes; the
    # program itself already holds which dims are dynamic and their ranges.
    dynamic_shapes: dict[str, dict[int, DimSpec]] = {}
    strip_metadata: bool = False  # drop node metadata (stack traces, fx nodes, scopes)


def _roots(workspace) -> list[str]:
    """Directory prefixes to cut from source paths, longest first."""
    import sys

    roots = {str(workspace), sys.prefix, sys.base_prefix, *(p for p in sys.path if p)}
    return sorted({r.rstrip("/") + "/" for r in roots if r.startswith("/") and len(r) > 1}, key=len, reverse=True)


def _rewrite_strings(proto, text, dim_param, strip: bool) -> None:
    """Walk every message of an ONNX proto: rewrite (or drop) metadata and docs, rename dims."""
    from google.protobuf.descriptor import FieldDescriptor
    from google.protobuf.message import Message

    def visit(msg):
        if msg.DESCRIPTOR.full_name.endswith("TensorShapeProto.Dimension"):
            if msg.HasField("dim_param"):
                msg.dim_param = dim_param(msg.dim_param)
            return
        for field, value in msg.ListFields():
            if field.name == "metadata_props":
                if strip:
                    del value[:]
                for entry in value:
                    entry.value = text(entry.value)
            elif field.name == "doc_string":
                setattr(msg, "doc_string", "" if strip else text(value))
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                for item in [value] if isinstance(value, Message) else value:
                    visit(item)

    visit(proto)


def _axis_renames(graph, cfg: OnnxExportConfig) -> dict[str, str]:
    """torch's symbol (e.g. 's77') -> the declared dim name, read off the graph inputs."""
    from ..errors import StepError

    inputs = {i.name: i for i in graph.input}
    renames: dict[str, str] = {}
    for input_name, axes in cfg.dynamic_shapes.items():
        if input_name not in inputs:
            raise StepError(
                f"dynamic_shapes names input '{input_name}', but the ONNX model's inputs are ({', '.join(inputs)})"
            )
        dims = inputs[input_name].type.tensor_type.shape.dim
        for axis, spec in axes.items():
            if not 0 <= axis < len(dims):
                raise StepError(f"dynamic_shapes: input '{input_name}' has {len(dims)} dims, no axis {axis}")
            dim = dims[axis]
            if not dim.HasField("dim_param"):
                raise StepError(
                    f"dynamic_shapes: axis {axis} of '{input_name}' is static ({dim.dim_value}) in the exported program"
                )
            if renames.setdefault(dim.dim_param, spec.name) != spec.name:
                raise StepError(
                    f"dynamic_shapes: axis {axis} of '{input_name}' is the same symbol as dim "
                    f"'{renames[dim.dim_param]}', so it cannot also be named '{spec.name}'"
                )
    return renames


def _shape(value) -> list:
    dims = value.type.tensor_type.shape.dim
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in dims]


def run(ctx) -> dict:
    import re

    import torch

    from ..errors import StepError

    cfg: OnnxExportConfig = ctx.config
    ep = load_program(ctx.input_path("program"))
    try:
        program = torch.onnx.export(ep, dynamo=True, verbose=False, opset_version=cfg.opset, optimize=cfg.optimize)
    except Exception as err:  # the exporter raises many types; all mean "no ONNX for this program"
        raise StepError(explain("onnx_export", err, ctx.workspace)) from err  # the node, cause and workaround

    weight_bytes = sum(v.const_value.nbytes for v in program.model.graph.initializers.values() if v.const_value is not None)
    if weight_bytes > _TWO_GB:
        raise StepError(
            f"the model's weights are {weight_bytes / 2**30:.1f} GB; ONNX files over 2 GB need external data, "
            f"which this step does not write"
        )
    proto = program.model_proto

    renames = _axis_renames(proto.graph, cfg)
    pattern = re.compile("|".join(rf"(?<!\w){re.escape(k)}(?!\w)" for k in sorted(renames, key=len, reverse=True)))

    def dim_param(text: str) -> str:
        return pattern.sub(lambda m: renames[m.group(0)], text) if renames else text

    roots = _roots(ctx.workspace)

    def text(value: str) -> str:
        for root in roots:
            value = value.replace(root, "")
        return value

    _rewrite_strings(proto, text, dim_param, strip=cfg.strip_metadata)

    data = proto.SerializeToString(deterministic=True)
    ctx.output_path("model.onnx").write_bytes(data)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {
        "opset": opset,
        "nodes": len(proto.graph.node),
        "bytes": len(data),
        "inputs": {i.name: _shape(i) for i in proto.graph.input},
        "outputs": {o.name: _shape(o) for o in proto.graph.output},
    }

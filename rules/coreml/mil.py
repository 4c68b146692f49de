"""Reading a Core ML package's MIL program without Core ML (it works on Linux): its constants, which
of them coremltools compressed, and their decompressed values, by name."""
from __future__ import annotations

import re

_SUFFIX = re.compile(r"_(to_fp16|to_fp32|palettized_pcs|palettized|quantized|sparsified)$")


def canonical_name(name: str) -> str:
    """A const's name without the suffixes coremltools adds: `p_fc1_weight_to_fp16_palettized` -> `p_fc1_weight`."""
    while True:
        stripped = _SUFFIX.sub("", name)
        if stripped == name:
            return name
        name = stripped


def load_mil(package_path):
    """The MIL program of a package, read without Core ML (works on Linux)."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto import load as milproto

    mlmodel = ct.models.MLModel(str(package_path), skip_model_load=True)
    spec = mlmodel.get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise ValueError(f"{package_path} is a {spec.WhichOneof('Type')} model, not an ML program")
    prog = milproto.load(
        model_spec=spec, specification_version=spec.specificationVersion, file_weights_dir=mlmodel.weights_dir
    )
    return mlmodel, prog


def _blocks(prog):
    stack = list(prog.functions.values())
    while stack:
        block = stack.pop(0)
        yield block
        for op in block.operations:
            stack.extend(op.blocks)


def compressed_names(prog) -> list[str]:
    """Output names of the constexpr ops that yield a dense weight (not those feeding another constexpr)."""
    names = []
    for block in _blocks(prog):
        for op in block.operations:
            if op.op_type.startswith("constexpr_") and not any(
                child.op_type.startswith("constexpr_") for out in op.outputs for child in out.child_ops
            ):
                names.extend(out.name for out in op.outputs)
    return names


def weight_consts(prog) -> dict:
    """Every float const of rank >= 1, by output name, in program order (materialized values)."""
    import numpy as np

    out = {}
    for block in _blocks(prog):
        for op in block.operations:
            if op.op_type != "const":
                continue
            var = op.outputs[0]
            if not var.child_ops and var not in block.outputs:
                continue  # dead: e.g. a lookup table left behind once its constexpr op is materialized
            val = var.val
            if isinstance(val, np.ndarray) and val.ndim >= 1 and val.dtype.kind == "f":
                out[op.outputs[0].name] = val
    return out


def decompressed_weights(package_path) -> tuple[dict, list[str]]:
    """(all float weights of the package, decompressed, by const name; the names that were compressed)."""
    # decompress_weights(mlmodel) is this pass plus a re-serialization into a temporary package
    # (deleted only at interpreter exit); applying the pass to the loaded program skips that.
    from coremltools.optimize.coreml._quantization_passes import WeightDecompressor

    _, prog = load_mil(package_path)
    names = compressed_names(prog)
    WeightDecompressor(op_selector=lambda op: True).apply(prog)
    return weight_consts(prog), names

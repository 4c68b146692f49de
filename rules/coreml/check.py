"""Check a compressed Core ML package numerically on Linux, where Core ML cannot predict.

The package's weights are decompressed (the constexpr ops that hold palettized or quantized
weights are materialized, as coremltools' `decompress_weights` does), mapped back to the torch
model's parameters, loaded into a copy of the model, and both models run in torch on the same
inputs. What this measures is the weight error alone: activations still run in float32 torch,
not in Core ML's float16 kernels.

Mapping, in order:
  1. by name: torch.export names a parameter `p_<fqn, non-alphanumerics as _>` (buffers `b_`),
     lowercased; coremltools keeps that name and appends `_to_fp16`, `_palettized`,
     `_quantized`, ..., which are stripped. A name two torch tensors would share is not used.
  2. by shape and order, for compressed consts only: a const the converter renamed (a conv
     weight with a batch norm folded in becomes `const_8`) takes the first unclaimed parameter
     of the same shape, in named_parameters() order, whose values fit it (>= _FIT_DB).
  Either way, when the const is the parameter times a per-output-channel scale (a batch norm
  folded into the conv), the scale is fitted and divided out before loading, so that the torch
  model, which applies the batch norm itself, computes what the package computes. The fit is
  exact with `reference_package` (the uncompressed input); without it, it is fitted to the
  compressed values, which at 2 bits is off by up to 25% per channel.
Compressed consts that fit no parameter are reported as `unmapped` and left out of the check;
uncompressed consts found by name are loaded too (they carry the package's float16 rounding).

Imports torch and coremltools inside functions: the engine may import rules/ freely.
"""
from __future__ import annotations

import re

from ..lib.runners import SNR_CAP_DB

_FIT_DB = 3.0  # a wrong tensor of the same shape fits at about 0 dB; 2-bit k-means at about 9
# A per-channel scale must beat the plain fit by this much to be used. Fitting a scale to an
# unscaled weight gains at most ~0.6 dB (k-means at 2 bits); a folded batch norm gains 2 dB at
# 2 bits (fitted to the compressed value) and 10-40 dB otherwise.
_SCALE_GAIN_DB = 1.0
_SUFFIX = re.compile(r"_(to_fp16|to_fp32|palettized_pcs|palettized|quantized|sparsified)$")


def snr_db(reference, actual) -> float:
    """runners.snr_db on arrays, flattened: one SNR definition (and cap) for every check."""
    import numpy as np
    import torch

    from ..lib.runners import snr_db as tensor_snr_db

    def flat(a):
        return torch.from_numpy(np.array(a, dtype=np.float64).ravel())

    return tensor_snr_db(flat(reference), flat(actual))


def canonical_name(name: str) -> str:
    """A const's name without the suffixes coremltools adds: `p_fc1_weight_to_fp16_palettized` -> `p_fc1_weight`."""
    while True:
        stripped = _SUFFIX.sub("", name)
        if stripped == name:
            return name
        name = stripped


def torch_const_name(fqn: str, kind: str) -> str:
    """The placeholder name torch.export gives a parameter ("p") or buffer ("b")."""
    return f"{kind}_" + re.sub(r"[^a-zA-Z0-9]", "_", fqn).lower()


def load_program(package_path):
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

    _, prog = load_program(package_path)
    names = compressed_names(prog)
    WeightDecompressor(op_selector=lambda op: True).apply(prog)
    return weight_consts(prog), names


def _channel_fit(value, param):
    """Fit value ~= s[c] * param per output channel (axis 0): (snr of plain fit, snr of scaled fit, s)."""
    import numpy as np

    v = value.reshape(value.shape[0], -1).astype(np.float64)
    p = param.reshape(param.shape[0], -1).astype(np.float64)
    norms = (p * p).sum(axis=1)
    scale = np.where(norms > 0, (v * p).sum(axis=1) / np.where(norms > 0, norms, 1.0), 1.0)
    return snr_db(value, param), snr_db(value, p * scale[:, None]), scale


def _to_param(value, param, fit=None):
    """The tensor to load into `param` for the package's `value`, how ("direct" or "channel_scale"),
    and how well it fits (dB). `fit` is the uncompressed const, when known: scales fitted to it are
    exact, while scales fitted to a coarsely compressed value are off (by 25% at 2 bits)."""
    import numpy as np

    plain, scaled, scale = _channel_fit(value if fit is None else fit, param)
    best = max(plain, scaled)
    if value.ndim >= 2 and scaled - plain > _SCALE_GAIN_DB and np.all(np.abs(scale) > 1e-6):
        shape = (-1,) + (1,) * (value.ndim - 1)
        return value.astype(np.float64) / scale.reshape(shape), "channel_scale", best
    return value, "direct", best


def example_inputs_from_spec(spec, seed: int = 0):
    """Seeded inputs of the package's declared shapes (the default shape of a ranged dim), by name."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    inputs = {}
    for desc in spec.description.input:
        kind = desc.type.WhichOneof("Type")
        if kind != "multiArrayType":
            raise ValueError(f"input '{desc.name}' is a {kind}; pass example_inputs explicitly")
        arr = desc.type.multiArrayType
        shape = list(arr.shape) or [r.lowerBound for r in arr.shapeRange.sizeRanges]
        dtype = arr.ArrayDataType.Name(arr.dataType)
        if dtype.startswith("INT"):
            inputs[desc.name] = torch.randint(0, 10, shape, generator=gen, dtype=torch.int32 if dtype == "INT32" else torch.int64)
        else:
            inputs[desc.name] = torch.randn(shape, generator=gen)
    return inputs


def _call(model, inputs):
    if isinstance(inputs, dict):
        return model(**inputs)
    return model(*inputs)


def compare_compressed_weights(package_path, torch_model, example_inputs=None, reference_package=None) -> dict:
    """Load the package's decompressed weights into a copy of `torch_model` and compare outputs.

    example_inputs: a tuple of positional tensors or a dict of named ones; by default, seeded
    randn tensors of the package's input shapes, passed by name (Core ML keeps forward()'s names).
    reference_package: the uncompressed package it came from, if at hand: mapping fits and folded
    batch-norm scales are then taken from its exact values rather than the compressed ones.
    Returns output max abs error and SNR (dB, capped at 200), per-weight SNR of the loaded weights
    against the originals, and how each weight was mapped.
    """
    import copy

    import numpy as np
    import torch

    mlmodel, _ = load_program(package_path)
    values, compressed = decompressed_weights(package_path)
    compressed_set = set(compressed)
    reference = {}
    if reference_package is not None:
        reference = {canonical_name(n): v for n, v in weight_consts(load_program(reference_package)[1]).items()}

    # Torch tensors by their export name; a name two tensors would share is ambiguous, so unused.
    params = {}
    by_name: dict[str, str] = {}
    clashes = set()
    named = [(n, t, "p") for n, t in torch_model.named_parameters()] + [(n, t, "b") for n, t in torch_model.named_buffers()]
    for fqn, tensor, kind in named:
        if not tensor.is_floating_point():
            continue
        params[fqn] = tensor
        key = torch_const_name(fqn, kind)
        if key in by_name:
            clashes.add(key)
        by_name[key] = fqn
    for key in clashes:
        del by_name[key]

    claimed: set[str] = set()
    weights, unmapped = [], []
    for const, value in values.items():
        fit = reference.get(canonical_name(const))
        if fit is not None and fit.shape != value.shape:
            fit = None
        fqn = by_name.get(canonical_name(const))
        how = "name"
        if fqn is not None and (fqn in claimed or tuple(params[fqn].shape) != value.shape):
            fqn = None
        if fqn is None and const in compressed_set:
            how = "shape"  # only compressed consts: an uncompressed one matters only for fp16 rounding
            for cand, tensor in params.items():
                if cand not in claimed and tuple(tensor.shape) == value.shape:
                    if _to_param(value, tensor.detach().numpy(), fit)[2] >= _FIT_DB:
                        fqn = cand
                        break
        if fqn is None:
            if const in compressed_set:
                unmapped.append(const)
            continue
        claimed.add(fqn)
        original = params[fqn].detach().numpy()
        load, scaling, _ = _to_param(value, original, fit)
        weights.append({
            "const": const, "param": fqn, "mapped_by": how, "scaling": scaling,
            "compressed": const in compressed_set, "snr_db": round(snr_db(original, load), 2), "_load": load,
        })
        if fit is not None:  # the compression's own error, against the uncompressed const
            weights[-1]["compression_snr_db"] = round(snr_db(fit, value), 2)

    copy_model = copy.deepcopy(torch_model).eval()
    state = dict(copy_model.named_parameters())
    state.update(dict(copy_model.named_buffers()))
    with torch.no_grad():
        for w in weights:
            target = state[w["param"]]
            target.copy_(torch.as_tensor(np.asarray(w.pop("_load")), dtype=target.dtype).reshape(target.shape))

    inputs = example_inputs if example_inputs is not None else example_inputs_from_spec(mlmodel.get_spec())
    torch_model.eval()
    with torch.no_grad():
        expected = [t for t in torch.utils._pytree.tree_leaves(_call(torch_model, inputs)) if isinstance(t, torch.Tensor)]
        actual = [t for t in torch.utils._pytree.tree_leaves(_call(copy_model, inputs)) if isinstance(t, torch.Tensor)]
    outputs = []
    for e, a in zip(expected, actual):
        e, a = e.detach().double().numpy(), a.detach().double().numpy()
        outputs.append({"max_abs_error": float(np.max(np.abs(e - a))) if e.size else 0.0, "snr_db": round(snr_db(e, a), 2)})

    compressed_weights = [w for w in weights if w["compressed"]]
    return {
        "max_abs_error": max((o["max_abs_error"] for o in outputs), default=0.0),
        "snr_db": min((o["snr_db"] for o in outputs), default=SNR_CAP_DB),
        "outputs": outputs,
        "weights": weights,
        "weight_snr_db_min": min((w["snr_db"] for w in compressed_weights), default=None),
        "mapped": {
            "name": sum(w["mapped_by"] == "name" for w in weights),
            "shape": sum(w["mapped_by"] == "shape" for w in weights),
            "channel_scale": sum(w["scaling"] == "channel_scale" for w in weights),
        },
        "compressed_consts": len(compressed),
        "compressed_mapped": len(compressed_weights),
        "unmapped": unmapped,
        "complete": not unmapped,
    }

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

Imports torch and coremltools inside functions (mil.py reads the package).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..lib.runners import SNR_CAP_DB
from .mil import canonical_name, decompressed_weights, load_mil, weight_consts

_FIT_DB = 3.0  # a wrong tensor of the same shape fits at about 0 dB; 2-bit k-means at about 9
# A per-channel scale must beat the plain fit by this much to be used. Fitting a scale to an
# unscaled weight gains at most ~0.6 dB (k-means at 2 bits); a folded batch norm gains 2 dB at
# 2 bits (fitted to the compressed value) and 10-40 dB otherwise.
_SCALE_GAIN_DB = 1.0

def snr_db(reference, actual) -> float:
    """runners.snr_db on arrays, flattened: one SNR definition (and cap) for every check."""
    import numpy as np
    import torch

    from ..lib.runners import snr_db as tensor_snr_db

    def flat(a):
        return torch.from_numpy(np.array(a, dtype=np.float64).ravel())

    return tensor_snr_db(flat(reference), flat(actual))


def torch_const_name(fqn: str, kind: str) -> str:
    """The placeholder name torch.export gives a parameter ("p") or buffer ("b")."""
    return f"{kind}_" + re.sub(r"[^a-zA-Z0-9]", "_", fqn).lower()


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


@dataclass
class _Params:
    """The torch model's float tensors by fqn, and by the name torch.export gives them (a name two
    tensors would share is ambiguous, so left out)."""

    tensors: dict = field(default_factory=dict)
    by_export_name: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, torch_model) -> "_Params":
        params, clashes = cls(), set()
        named = [(n, t, "p") for n, t in torch_model.named_parameters()] + [(n, t, "b") for n, t in torch_model.named_buffers()]
        for fqn, tensor, kind in named:
            if not tensor.is_floating_point():
                continue
            params.tensors[fqn] = tensor
            key = torch_const_name(fqn, kind)
            if key in params.by_export_name:
                clashes.add(key)
            params.by_export_name[key] = fqn
        for key in clashes:
            del params.by_export_name[key]
        return params


def _find_param(const: str, value, fit, params: _Params, claimed: set[str], compressed: bool) -> tuple[str | None, str]:
    """The parameter a const maps to, and how: by name, else (compressed consts only: an uncompressed
    one matters only for its fp16 rounding) the first unclaimed one of its shape whose values fit."""
    fqn = params.by_export_name.get(canonical_name(const))
    if fqn is not None and fqn not in claimed and tuple(params.tensors[fqn].shape) == value.shape:
        return fqn, "name"
    if compressed:
        for cand, tensor in params.tensors.items():
            if cand not in claimed and tuple(tensor.shape) == value.shape:
                if _to_param(value, tensor.detach().numpy(), fit)[2] >= _FIT_DB:
                    return cand, "shape"
    return None, "shape"


def _map_weights(values: dict, compressed: set[str], reference: dict, params: _Params) -> tuple[list[dict], list[str]]:
    """Each const's parameter, the tensor to load for it and how well it fits; the compressed consts
    that fit no parameter."""
    claimed: set[str] = set()
    weights, unmapped = [], []
    for const, value in values.items():
        fit = reference.get(canonical_name(const))
        if fit is not None and fit.shape != value.shape:
            fit = None
        fqn, how = _find_param(const, value, fit, params, claimed, const in compressed)
        if fqn is None:
            if const in compressed:
                unmapped.append(const)
            continue
        claimed.add(fqn)
        original = params.tensors[fqn].detach().numpy()
        load, scaling, _ = _to_param(value, original, fit)
        weights.append({
            "const": const, "param": fqn, "mapped_by": how, "scaling": scaling,
            "compressed": const in compressed, "snr_db": round(snr_db(original, load), 2), "_load": load,
        })
        if fit is not None:  # the compression's own error, against the uncompressed const
            weights[-1]["compression_snr_db"] = round(snr_db(fit, value), 2)
    return weights, unmapped


def _with_weights(torch_model, weights: list[dict]):
    """A copy of the model with the package's weights loaded in place of its own."""
    import copy

    import numpy as np
    import torch

    model = copy.deepcopy(torch_model).eval()
    state = dict(model.named_parameters())
    state.update(dict(model.named_buffers()))
    with torch.no_grad():
        for w in weights:
            target = state[w["param"]]
            target.copy_(torch.as_tensor(np.asarray(w.pop("_load")), dtype=target.dtype).reshape(target.shape))
    return model


def _compare_outputs(expected_model, actual_model, inputs) -> list[dict]:
    import numpy as np
    import torch

    expected_model.eval()
    with torch.no_grad():
        expected = [t for t in torch.utils._pytree.tree_leaves(_call(expected_model, inputs)) if isinstance(t, torch.Tensor)]
        actual = [t for t in torch.utils._pytree.tree_leaves(_call(actual_model, inputs)) if isinstance(t, torch.Tensor)]
    outputs = []
    for e, a in zip(expected, actual):
        e, a = e.detach().double().numpy(), a.detach().double().numpy()
        outputs.append({"max_abs_error": float(np.max(np.abs(e - a))) if e.size else 0.0, "snr_db": round(snr_db(e, a), 2)})
    return outputs


def compare_compressed_weights(package_path, torch_model, example_inputs=None, reference_package=None) -> dict:
    """Load the package's decompressed weights into a copy of `torch_model` and compare outputs.

    example_inputs: a tuple of positional tensors or a dict of named ones; by default, seeded
    randn tensors of the package's input shapes, passed by name (Core ML keeps forward()'s names).
    reference_package: the uncompressed package it came from, if at hand: mapping fits and folded
    batch-norm scales are then taken from its exact values rather than the compressed ones.
    Returns output max abs error and SNR (dB, capped at 200), per-weight SNR of the loaded weights
    against the originals, and how each weight was mapped.
    """
    mlmodel, _ = load_mil(package_path)
    values, compressed = decompressed_weights(package_path)
    reference = {}
    if reference_package is not None:
        reference = {canonical_name(n): v for n, v in weight_consts(load_mil(reference_package)[1]).items()}
    weights, unmapped = _map_weights(values, set(compressed), reference, _Params.of(torch_model))
    loaded = _with_weights(torch_model, weights)
    inputs = example_inputs if example_inputs is not None else example_inputs_from_spec(mlmodel.get_spec())
    outputs = _compare_outputs(torch_model, loaded, inputs)
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

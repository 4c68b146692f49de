"""Run a built artifact on example inputs, and measure how far its outputs are from eager's.

Each run_* takes the artifact's path, positional args and keyword args (torch tensors) and
returns the outputs as a flat list of tensors (pytree leaves, in order). Formats that take a
flat input list (.pte, .onnx) get the args, then the kwargs in the order given, which must be
the order the model was exported with.

Imports the toolchain inside each function: the engine may import this module.
"""
from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

from .programs import load_program

SNR_CAP_DB = 200.0  # exact outputs: a finite number, since JSON has no inf


def _loaded(loader, path):
    """Load an artifact once per (file, size, mtime): a verify step runs it at several sizes,
    and a source-only AOTInductor package is built with g++ at each load (10+ s)."""
    st = os.stat(path)
    return _load_cached(loader, str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=8)
def _load_cached(loader, path: str, size: int, mtime_ns: int):
    return loader(path)


def _flat_inputs(args, kwargs) -> list:
    return [*args, *(kwargs or {}).values()]


def _leaves(outputs) -> list:
    from torch.utils._pytree import tree_leaves

    return list(tree_leaves(outputs))


def run_pte(path: str | Path, args, kwargs=None) -> list:
    """An ExecuTorch program (.pte), method "forward"."""
    _program, method = _loaded(_load_pte, path)
    return _leaves(method.execute([t.contiguous() for t in _flat_inputs(args, kwargs)]))


def _load_pte(path: str):
    import executorch.kernels.quantized  # noqa: F401  quantized_decomposed kernels, as an app links them
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(path)
    return program, program.load_method("forward")  # keep the program alive with its method


def run_pt2(path: str | Path, args, kwargs=None) -> list:
    """A torch.export program (.pt2), as the unlifted module torch.export.load gives."""
    import torch

    module = _loaded(_load_pt2, path)
    with torch.no_grad():
        return _leaves(module(*args, **(kwargs or {})))


def _load_pt2(path: str):
    return load_program(path).module()


def run_onnx(path: str | Path, args, kwargs=None) -> list:
    """An ONNX model, in onnxruntime on the CPU.

    kwargs go to the model input of the same name when there is one; the other model inputs,
    in order, take the positional args (then any kwargs without a matching name).
    """
    import torch

    session = _loaded(_load_onnx, path)
    names = [i.name for i in session.get_inputs()]
    kwargs = dict(kwargs or {})
    by_name = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
    rest = iter([*args, *kwargs.values()])
    feed = {}
    for name in names:
        value = by_name.get(name)
        if value is None:
            value = next(rest, None)
        if value is None:
            raise ValueError(f"{path}: no value for ONNX input '{name}' (inputs: {', '.join(names)})")
        feed[name] = _to_numpy(value)
    leftover = list(rest)
    if leftover:
        raise ValueError(f"{path}: {len(leftover)} more inputs than the ONNX model takes ({', '.join(names)})")
    return [torch.from_numpy(o) for o in session.run(None, feed)]


def _load_onnx(path: str):
    import onnxruntime

    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])


def _to_numpy(t):
    import torch

    if t.dtype == torch.bfloat16:
        raise ValueError("bfloat16 inputs have no numpy type; onnxruntime cannot take them from Python")
    return t.detach().contiguous().cpu().numpy()


def run_aoti(path: str | Path, args, kwargs=None) -> list:
    """An AOTInductor package (.pt2). A source-only package is built with g++ when loaded."""
    import torch

    model = _loaded(_load_aoti, path)
    with torch.no_grad():
        return _leaves(model(*args, **(kwargs or {})))


def _load_aoti(path: str):
    import torch

    return torch._inductor.aoti_load_package(path)


def _pair(reference, actual):
    """Both sides as float64 vectors: a tensor, or a sequence of tensors, concatenated."""
    import torch

    refs = [reference] if isinstance(reference, torch.Tensor) else list(reference)
    acts = [actual] if isinstance(actual, torch.Tensor) else list(actual)
    if len(refs) != len(acts):
        raise ValueError(f"{len(refs)} reference outputs, {len(acts)} actual outputs")
    for i, (r, a) in enumerate(zip(refs, acts)):
        if tuple(r.shape) != tuple(a.shape):
            raise ValueError(f"output {i}: shape {tuple(a.shape)}, expected {tuple(r.shape)}")
    return _flat(refs), _flat(acts)


def _flat(tensors):
    import torch

    parts = [t.detach().reshape(-1).to(torch.float64) for t in tensors]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def _diff(ref, act):
    """|ref - act|, where equal infinities and NaN against NaN count as no error (NaN elsewhere)."""
    import torch

    same = (ref == act) | (torch.isnan(ref) & torch.isnan(act))
    diff = (ref - act).abs()
    return torch.where(same, torch.zeros_like(diff), diff)


def max_abs_error(reference, actual) -> float:
    """The largest |reference - actual|; inf when one side is NaN or infinite and the other is not."""
    ref, act = _pair(reference, actual)
    if ref.numel() == 0:
        return 0.0
    diff = _diff(ref, act)
    return math.inf if _any_nan(diff) else float(diff.max())


def _any_nan(t) -> bool:
    import torch

    return bool(torch.isnan(t).any())


def snr_db(reference, actual) -> float:
    """Signal-to-noise ratio of actual against reference, in dB, clamped to +-SNR_CAP_DB."""
    import torch

    ref, act = _pair(reference, actual)
    diff = _diff(ref, act)
    if _any_nan(diff) or bool(torch.isinf(diff).any()):
        return -SNR_CAP_DB
    finite = torch.isfinite(ref)
    noise = float((diff**2).sum())
    signal = float((ref[finite] ** 2).sum())
    if noise == 0.0:
        return SNR_CAP_DB
    if signal == 0.0:
        return -SNR_CAP_DB
    return max(-SNR_CAP_DB, min(SNR_CAP_DB, 10.0 * math.log10(signal / noise)))


def compare(reference, actual) -> dict:
    """JSON-safe metrics: max_abs_error (None when not finite) and snr_db."""
    err = max_abs_error(reference, actual)
    return {"max_abs_error": err if math.isfinite(err) else None, "snr_db": round(snr_db(reference, actual), 2)}

"""Build a declared model and its example inputs in torch. Used by workers and by tests.

Imports torch: never import this module from the engine or from a target kind's plan().
"""
from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import torch

from ..errors import StepError
from ..values import TensorSpec

_DTYPES = {
    "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int64": torch.int64,
    "int32": torch.int32, "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool,
}


def make_tensor(spec: TensorSpec, shape: list[int] | None = None) -> torch.Tensor:
    """The example tensor a spec describes; `shape` overrides it (for min/max of dynamic dims)."""
    shape = list(spec.shape if shape is None else shape)
    dtype = _DTYPES[spec.dtype]
    gen = torch.Generator().manual_seed(spec.seed)
    if spec.fill == "zeros":
        return torch.zeros(shape, dtype=dtype)
    if spec.fill == "ones":
        return torch.ones(shape, dtype=dtype)
    if spec.fill == "randint" or not dtype.is_floating_point:
        low, high = spec.int_range()
        return torch.randint(low, high, shape, generator=gen).to(dtype)
    if spec.fill == "rand":
        return torch.rand(shape, generator=gen).to(dtype)
    return torch.randn(shape, generator=gen).to(dtype)


def example_inputs(inputs: dict[str, TensorSpec], keyword_inputs: dict[str, TensorSpec], shapes: dict | None = None):
    """(args, kwargs) as declared; `shapes` (name -> shape) overrides the declared shapes."""
    shapes = shapes or {}
    args = tuple(make_tensor(s, shapes.get(n)) for n, s in inputs.items())
    kwargs = {n: make_tensor(s, shapes.get(n)) for n, s in keyword_inputs.items()}
    return args, kwargs


def load_model(workspace: Path, entry: str, init_seed: int = 0, weights: str | None = None,
               kwargs: dict | None = None) -> torch.nn.Module:
    """Import the entry, call it with its kwargs under a fixed seed, load weights, and put it in eval mode."""
    kwargs = kwargs or {}
    module_name, _, attr = entry.partition(":")
    if str(workspace) not in sys.path:
        sys.path.insert(0, str(workspace))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise StepError(f"entry module '{module_name}' not found in the workspace") from None
        raise
    factory = getattr(module, attr, None)
    if factory is None:
        names = [n for n in dir(module) if not n.startswith("_")]
        raise StepError(f"entry '{entry}': module '{module_name}' has no '{attr}' (it has: {', '.join(names)})")
    _check_kwargs(factory, entry, kwargs)
    torch.manual_seed(init_seed)
    model = factory(**kwargs)
    if not isinstance(model, torch.nn.Module):
        raise StepError(f"entry '{entry}' returned {type(model).__name__}, not a torch.nn.Module")
    if weights:
        missing, unexpected = _load_weights(model, workspace / weights, weights, entry)
        if missing or unexpected:
            raise StepError(
                f"weights {weights} do not fit {entry}: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
            )
    return model.eval()


def load_declared(workspace: Path, cfg) -> torch.nn.Module:
    """The model as its ExportConfig declares it."""
    return load_model(workspace, cfg.entry, cfg.init_seed, cfg.weights, cfg.kwargs)


def _check_kwargs(factory, entry: str, kwargs: dict) -> None:
    """model(kwargs = ...) must fit the entry's signature: said as the declaration's mistake."""
    import inspect

    try:
        inspect.signature(factory).bind_partial(**kwargs)
    except ValueError:  # no signature to read (a builtin): the call says
        return
    except TypeError as err:
        try:
            params = [p for p in inspect.signature(factory).parameters if p != "self"]
        except ValueError:
            params = []
        raise StepError(f"kwargs do not fit entry '{entry}': {err} (it takes: {', '.join(params) or 'no arguments'})") from None


def _load_weights(model: torch.nn.Module, path: Path, weights: str, entry: str):
    """load_state_dict(strict=False) from a safetensors file: (missing keys, unexpected keys)."""
    from safetensors.torch import load_file

    from .weights_file import CONVERT, not_safetensors

    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own error type (and OSError) for a bad file
        problem = not_safetensors(path) or f"not a readable safetensors file ({err})"
        raise StepError(f"weights {weights} is {problem}; {CONVERT}") from None
    try:
        return model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches raise even when strict=False
        detail = " ".join(str(err).split("\n", 1)[-1].split())
        raise StepError(f"weights {weights} do not fit {entry}: {detail}") from None


def check_signature(model: torch.nn.Module, inputs: dict, keyword_inputs: dict) -> None:
    """Declared input names must be forward()'s parameter names: dynamic shapes are keyed by them."""
    params = inspect.signature(model.forward).parameters
    positional = [n for n, p in params.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    accepts_var = any(p.kind == p.VAR_POSITIONAL for p in params.values())
    if not accepts_var and list(inputs) != positional[: len(inputs)]:
        raise StepError(
            f"inputs are declared as ({', '.join(inputs)}) but forward() takes ({', '.join(positional)}); "
            f"name them as forward() does, in order"
        )
    accepts_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
    unknown = [n for n in keyword_inputs if n not in params and not accepts_kw]
    if unknown:
        raise StepError(f"keyword_inputs {unknown} are not parameters of forward({', '.join(params)})")

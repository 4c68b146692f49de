"""The eager model's outputs on each verification case's inputs, recorded by the step that exports
(or quantizes) the model, beside its program, and read by every check of an artifact made from it.

That step has torch and the model's code loaded already. Recorded there, a check needs neither the
model's code nor what it imports (transformers: about 1.3 s per process), and an edit that leaves
both the program and these outputs the same (a docstring) reruns no check.
"""
from __future__ import annotations

import json
from pathlib import Path

FILE = "outputs.safetensors"


def _name(case: str, index: int) -> str:
    return f"{case}/{index}"


def record(workspace: Path, cfg, cases: list[tuple[str, dict]], path: Path) -> None:
    """Run a fresh instance of the model (export may leave state on the one it traced, such as a
    cache built on its first call) on each case's inputs, and save its outputs."""
    import torch
    from safetensors.torch import save_file
    from torch.utils._pytree import tree_leaves

    from .modelio import example_inputs, load_declared

    model = load_declared(workspace, cfg)
    tensors, counts, ran = {}, {}, set()
    for name, shapes in cases:
        key = json.dumps(shapes, sort_keys=True)
        if key in ran:  # same shapes, same seeded inputs, same outputs (the check says which it repeats)
            continue
        ran.add(key)
        args, kwargs = example_inputs(cfg.inputs, cfg.keyword_inputs, shapes)
        with torch.no_grad():
            outputs = tree_leaves(model(*args, **kwargs))
        counts[name] = len(outputs)
        for i, t in enumerate(outputs):  # its own storage each: safetensors refuses shared memory
            tensors[_name(name, i)] = t.detach().contiguous().clone()
    save_file(tensors, str(path), metadata={"outputs": json.dumps(counts)})


def read(path: Path) -> dict[str, list]:
    """Case name -> its output tensors, in the model's output order."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        counts = json.loads(f.metadata()["outputs"])
        return {case: [f.get_tensor(_name(case, i)) for i in range(n)] for case, n in counts.items()}

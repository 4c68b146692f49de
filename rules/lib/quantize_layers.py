"""The model's weight-bearing layers as quantization sees them: which there are, transformers'
Conv1D turned into nn.Linear so that the schemes can quantize it, and how much of them a scheme
quantized (the coverage report and its warnings).

Weight bytes are counted once per tensor: a weight tied between layers (GPT-2's lm_head and
wte) counts once, and as quantized only if every layer using it was quantized, since otherwise
the float tensor stays in the program beside its quantized copy.
"""
from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import nn

CONV1D = "Conv1D (transformers)"
_KINDS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
          nn.Embedding, nn.EmbeddingBag)
_SHOWN_NAMES = 6  # layer names a reason lists before "and N more"
HALF = 0.5  # warn below this share of weight bytes quantized


@dataclass(frozen=True)
class Layer:
    name: str
    kind: str  # "Linear", "Conv2d", "Embedding", CONV1D, ...
    weight: torch.Tensor

    @property
    def key(self) -> tuple:
        """Identity of the weight tensor: tied layers share it."""
        w = self.weight
        try:
            return (w.untyped_storage().data_ptr(), w.storage_offset(), tuple(w.shape), w.dtype)
        except (RuntimeError, NotImplementedError):  # a tensor subclass without storage of its own
            return (id(w),)

    @property
    def nbytes(self) -> int:
        return self.weight.numel() * self.weight.element_size()


def _transformers_conv1d():
    """transformers' Conv1D class if the model's code imported transformers (never imported here)."""
    return getattr(sys.modules.get("transformers.pytorch_utils"), "Conv1D", None)


def weight_bearing_layers(model: nn.Module) -> dict[str, Layer]:
    conv1d = _transformers_conv1d()
    layers = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor):
            continue
        if conv1d is not None and isinstance(module, conv1d):
            layers[name] = Layer(name, CONV1D, weight)
        elif isinstance(module, _KINDS):
            kind = next(k.__name__ for k in _KINDS if isinstance(module, k))  # Linear for its subclasses too
            layers[name] = Layer(name, kind, weight)
    return layers


def conv1d_to_linear(model: nn.Module) -> int:
    """Replace every transformers Conv1D (y = x @ W + b, W of shape [in, out]) by the nn.Linear
    computing the same (weight W.T), which torchao and XNNPACKQuantizer quantize. Returns how many."""
    conv1d = _transformers_conv1d()
    if conv1d is None:
        return 0
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, conv1d) and name]
    for name, module in found:
        in_features, out_features = module.weight.shape
        linear = torch.nn.utils.skip_init(nn.Linear, in_features, out_features, bias=module.bias is not None,
                                          device=module.weight.device, dtype=module.weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(module.weight.t())
            if module.bias is not None:
                linear.bias.copy_(module.bias)
        linear.train(module.training)
        owner, _, attr = name.rpartition(".")
        setattr(model.get_submodule(owner), attr, linear)
    return len(found)


@dataclass
class Coverage:
    """What a scheme quantized of the model's weight-bearing layers; `reasons` says, per layer left
    in float, why (layers without one get a generic reason)."""

    layers: dict[str, Layer]
    quantized: set[str]
    reasons: dict[str, str]

    def _tensors(self) -> list[list[Layer]]:
        """The layers grouped by the weight tensor they use."""
        users = defaultdict(list)
        for layer in self.layers.values():
            users[layer.key].append(layer)
        return list(users.values())

    def _left(self) -> dict[str, list[Layer]]:
        left = defaultdict(list)
        for layer in self.layers.values():
            if layer.name not in self.quantized:
                left[self.reasons.get(layer.name, "not quantized by the scheme")].append(layer)
        return dict(left)

    def _shared(self) -> list[str]:
        notes = []
        for group in self._tensors():
            done = [l.name for l in group if l.name in self.quantized]
            left = [l.name for l in group if l.name not in self.quantized]
            if done and left:
                notes.append(f"{done[0]} is quantized but shares its weight with {', '.join(left)}, which "
                             f"{'is' if len(left) == 1 else 'are'} not: the program keeps the float weight beside "
                             f"its quantized copy")
        return notes

    def metrics(self) -> dict:
        tensors = self._tensors()
        total = sum(group[0].nbytes for group in tensors)
        done = sum(group[0].nbytes for group in tensors if all(l.name in self.quantized for l in group))
        by_kind: dict = defaultdict(lambda: {"layers": 0, "quantized": 0})
        for layer in self.layers.values():
            by_kind[layer.kind]["layers"] += 1
            by_kind[layer.kind]["quantized"] += layer.name in self.quantized
        report = {
            "layers": len(self.layers),
            "quantized_layers": sum(1 for name in self.layers if name in self.quantized),
            "weight_bytes": total,
            "quantized_weight_bytes": done,
            "quantized_share": round(done / total, 3) if total else 0.0,
            "by_kind": {kind: dict(counts) for kind, counts in sorted(by_kind.items())},
            "left_float": {reason: _names(group) for reason, group in self._left().items()},
        }
        if self._shared():
            report["shared_weights"] = self._shared()
        return report

    def warnings(self, scheme: str, bytes_before: int, bytes_after: int) -> list[str]:
        """Full sentences for the build summary: little quantized (and why), or no smaller program."""
        out = []
        report = self.metrics()
        total = report["weight_bytes"]
        little = total and report["quantized_weight_bytes"] < HALF * total
        if little:
            parts = []
            for reason, group in sorted(self._left().items(), key=lambda kv: -sum(l.nbytes for l in kv[1])):
                share = sum(l.nbytes for l in group) / total
                what = f"{len(group)} {'/'.join(sorted({l.kind for l in group}))} layer{'s' * (len(group) > 1)}"
                parts.append(f"{what} ({_names(group)}; {share:.0%} of the weight bytes): {reason}")
            out.append(
                f"{scheme} quantized {report['quantized_layers']} of {report['layers']} weight-bearing layers "
                f"({report['quantized_share']:.0%} of their weight bytes); left in float: "
                + "; ".join(parts + self._shared()) + "."
            )
        if bytes_after >= bytes_before:
            cause = "" if little else "".join(f" {note}." for note in self._shared()[:1])
            out.append(
                f"the {scheme} program's weights take {bytes_after:,} bytes, no fewer than the float model's "
                f"{bytes_before:,}: quantizing did not make it smaller.{cause}"
            )
        return out


def _names(group: list[Layer]) -> str:
    names = ", ".join(l.name or "(the model itself)" for l in group[:_SHOWN_NAMES])
    return names + (f" and {len(group) - _SHOWN_NAMES} more" if len(group) > _SHOWN_NAMES else "")

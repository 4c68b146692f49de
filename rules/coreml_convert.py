"""Step `coreml_convert`: convert an exported program (ATen ops kept) to a Core ML .mlpackage."""
from __future__ import annotations

from typing import Literal

from .specs import Spec


class CoremlConvertConfig(Spec):
    compute_units: Literal["all", "cpu_only", "cpu_and_gpu", "cpu_and_ne"] = "all"
    compute_precision: Literal["float16", "float32"] = "float16"
    minimum_deployment_target: Literal["iOS15", "iOS16", "iOS17", "iOS18", "macOS12", "macOS13", "macOS14", "macOS15"] = "iOS17"


def run(ctx) -> dict:
    import coremltools as ct
    import torch

    cfg = CoremlConvertConfig.model_validate(ctx.config)
    ep = torch.export.load(ctx.input_path("program"))
    mlmodel = ct.convert(
        ep,
        minimum_deployment_target=getattr(ct.target, cfg.minimum_deployment_target),
        compute_precision=getattr(ct.precision, cfg.compute_precision.upper()),
        compute_units=getattr(ct.ComputeUnit, cfg.compute_units.upper()),
    )
    mlmodel.save(str(ctx.output_path("model.mlpackage")))
    spec = mlmodel.get_spec()
    return {
        "inputs": [i.name for i in spec.description.input],
        "outputs": [o.name for o in spec.description.output],
    }

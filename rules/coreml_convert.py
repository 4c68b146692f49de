"""Step `coreml_convert`: convert an exported program (ATen ops kept) to a Core ML .mlpackage."""
from __future__ import annotations

from .programs import load_program
from .specs import ComputeUnits, DeploymentTarget, Precision, Spec, coreml_options


class CoremlConvertConfig(Spec):
    compute_units: ComputeUnits = "all"
    compute_precision: Precision = "float16"
    minimum_deployment_target: DeploymentTarget = "iOS17"


def run(ctx) -> dict:
    import coremltools as ct

    cfg = CoremlConvertConfig.model_validate(ctx.config)
    ep = load_program(ctx.input_path("program"))
    mlmodel = ct.convert(ep, **coreml_options(cfg.compute_units, cfg.compute_precision, cfg.minimum_deployment_target))
    mlmodel.save(str(ctx.output_path("model.mlpackage")))
    spec = mlmodel.get_spec()
    return {
        "inputs": [i.name for i in spec.description.input],
        "outputs": [o.name for o in spec.description.output],
    }

"""modelbuild's rules: the target kinds BUILD.models may declare and the steps workers run.

Importing this package loads no toolchain; step modules import torch & co. inside run().
"""
from buildsys.ruleset import RuleSet, StepKind, TargetKind

from .artifacts import (
    CoremlPackage, ExecutorchProgram, Pt2Program, plan_coreml, plan_executorch, plan_pt2,
)
from .model import ModelDecl, plan_model
from .specs import PRELUDE

_TORCH = ("torch",)
_ET = ("torch", "executorch", "torchao")

RULESET = RuleSet(
    kinds={
        "model": TargetKind("model", ModelDecl, plan_model, "a PyTorch model and its example inputs"),
        "pt2_program": TargetKind("pt2_program", Pt2Program, plan_pt2, "a torch.export .pt2 program"),
        "executorch_program": TargetKind(
            "executorch_program", ExecutorchProgram, plan_executorch, "an ExecuTorch .pte program"
        ),
        "coreml_package": TargetKind("coreml_package", CoremlPackage, plan_coreml, "a Core ML .mlpackage"),
    },
    steps={
        "export": StepKind("export", "rules.export", _TORCH),
        "decompose": StepKind("decompose", "rules.decompose", _TORCH),
        "partition": StepKind("partition", "rules.partition", _ET + ("coremltools",)),
        "coreml_convert": StepKind("coreml_convert", "rules.coreml_convert", ("torch", "coremltools")),
    },
    prelude=PRELUDE,
)

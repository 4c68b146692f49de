"""modelbuild's rules: the target kinds BUILD.models may declare and the steps workers run.

Importing this package loads no toolchain; step modules import torch & co. inside run().
"""
from buildsys.ruleset import RuleSet, StepKind, TargetKind

from .artifacts import (
    AotiPackage, CoremlPackage, ExecutorchProgram, OnnxModel, Pt2Program, plan_aoti, plan_coreml, plan_executorch,
    plan_onnx, plan_pt2,
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
        "onnx_model": TargetKind("onnx_model", OnnxModel, plan_onnx, "an ONNX model"),
        "aoti_package": TargetKind("aoti_package", AotiPackage, plan_aoti, "an AOTInductor package"),
    },
    steps={
        "export": StepKind("export", "rules.export", _TORCH),
        "quantize": StepKind("quantize", "rules.quantize", _ET + ("numpy", "safetensors")),
        "decompose": StepKind("decompose", "rules.decompose", _TORCH),
        "partition": StepKind("partition", "rules.partition", _ET + ("coremltools",)),
        "coreml_convert": StepKind("coreml_convert", "rules.coreml_convert", ("torch", "coremltools")),
        "coreml_compress": StepKind("coreml_compress", "rules.coreml_compress", ("coremltools", "scikit-learn", "numpy")),
        "onnx_export": StepKind("onnx_export", "rules.onnx_export", ("torch", "onnx", "onnxscript")),
        "aoti": StepKind("aoti", "rules.aoti", ("torch",), host_bound=True),
        "verify": StepKind("verify", "rules.verify", _ET + ("coremltools", "onnxruntime")),
    },
    prelude=PRELUDE,
)

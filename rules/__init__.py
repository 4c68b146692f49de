"""modelbuild's rules: the target kinds BUILD.models may declare and the steps workers run.

Importing this package loads no toolchain; step modules import torch & co. inside run().
"""
from buildsys.rule_api import Flag, RuleSet, StepKind, TargetKind

from .artifacts import (
    AotiPackage, CoremlPackage, ExecutorchProgram, OnnxModel, Pt2Program, plan_aoti, plan_coreml, plan_executorch,
    plan_onnx, plan_pt2,
)
from .model import ModelDecl, plan_model
from .provenance import signing_key
from .release_command import VERIFY_RELEASE
from .release_target import ReleaseDecl, plan_release
from .report import metrics_view
from .specs import PRELUDE

_TORCH = ("torch",)
_ET = ("torch", "executorch", "torchao")

_KINDS = [
    TargetKind("model", ModelDecl, plan_model),
    TargetKind("pt2_program", Pt2Program, plan_pt2),
    TargetKind("executorch_program", ExecutorchProgram, plan_executorch),
    TargetKind("coreml_package", CoremlPackage, plan_coreml),
    TargetKind("onnx_model", OnnxModel, plan_onnx),
    TargetKind("aoti_package", AotiPackage, plan_aoti),
    TargetKind("release", ReleaseDecl, plan_release),
]
# Each step's module, and the distributions whose versions enter its action key.
_STEPS = [
    StepKind("export", "rules.export", _TORCH),
    StepKind("quantize", "rules.quantize", _ET + ("numpy", "safetensors")),
    StepKind("decompose", "rules.decompose", _TORCH),
    StepKind("partition", "rules.partition", _ET + ("coremltools",)),
    StepKind("coreml_convert", "rules.coreml_convert", ("torch", "coremltools")),
    StepKind("coreml_compress", "rules.coreml_compress", ("coremltools", "scikit-learn", "numpy")),
    StepKind("onnx_export", "rules.onnx_export", ("torch", "onnx", "onnxscript")),
    StepKind("aoti", "rules.aoti", ("torch",), host_bound=True),
    StepKind("verify", "rules.verify", _ET + ("coremltools", "onnxruntime")),
    StepKind("bundle", "rules.bundle", _ET),
    StepKind("release", "rules.release", _ET + ("coremltools", "onnx", "onnxscript", "onnxruntime", "cryptography")),
]

RULESET = RuleSet(
    kinds={k.name: k for k in _KINDS},
    steps={s.name: s for s in _STEPS},
    prelude=PRELUDE,
    flags=(Flag("--sign-key", "sign_key", "KEY", "sign release provenance with this ed25519 private key (PEM)",
                signing_key),),
    commands=(VERIFY_RELEASE,),
    report=metrics_view,
)

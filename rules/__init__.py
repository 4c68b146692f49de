"""modelbuild's rules: the target kinds BUILD.models may declare and the steps workers run.

Importing this package loads no toolchain; step modules import torch & co. inside run().
"""
from buildsys.rule_api import Flag, RuleSet, StepKind, TargetKind

from .aoti import AotiConfig
from .artifacts import (
    AotiPackage,
    CoremlPackage,
    ExecutorchProgram,
    OnnxModel,
    Pt2Program,
    plan_aoti,
    plan_coreml,
    plan_executorch,
    plan_onnx,
    plan_pt2,
)
from .bundle import BundleConfig
from .coreml_compress import CoremlCompressConfig
from .coreml_convert import CoremlConvertConfig
from .decompose import DecomposeConfig
from .export import ExportConfig
from .model import ModelDecl, plan_model
from .onnx_export import OnnxExportConfig
from .partition import PartitionConfig
from .provenance import signing_key
from .quantize import QuantizeConfig
from .release_command import VERIFY_RELEASE
from .release_target import ReleaseConfig, ReleaseDecl, plan_release
from .report import metrics_view
from .specs import PRELUDE
from .verify import VerifyConfig

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
# Each step's module, its config, and the distributions whose versions enter its action key.
_STEPS = [
    StepKind("export", "rules.export", ExportConfig, _TORCH),
    StepKind("quantize", "rules.quantize", QuantizeConfig, _ET + ("numpy", "safetensors")),
    StepKind("decompose", "rules.decompose", DecomposeConfig, _TORCH),
    StepKind("partition", "rules.partition", PartitionConfig, _ET + ("coremltools",)),
    StepKind("coreml_convert", "rules.coreml_convert", CoremlConvertConfig, ("torch", "coremltools")),
    StepKind("coreml_compress", "rules.coreml_compress", CoremlCompressConfig, ("coremltools", "scikit-learn", "numpy")),
    StepKind("onnx_export", "rules.onnx_export", OnnxExportConfig, ("torch", "onnx", "onnxscript")),
    StepKind("aoti", "rules.aoti", AotiConfig, ("torch",), host_bound=True),
    StepKind("verify", "rules.verify", VerifyConfig, _ET + ("coremltools", "onnxruntime")),
    StepKind("bundle", "rules.bundle", BundleConfig, _ET),
    StepKind("release", "rules.release", ReleaseConfig,
             _ET + ("coremltools", "onnx", "onnxscript", "onnxruntime", "cryptography")),
]

RULESET = RuleSet(
    kinds={k.name: k for k in _KINDS},
    steps={s.name: s for s in _STEPS},
    worker="rules.worker",
    rule_roots=("rules",),
    prelude=PRELUDE,
    flags=(Flag("--sign-key", "sign_key", "KEY", "sign release provenance with this ed25519 private key (PEM)",
                signing_key),),
    commands=(VERIFY_RELEASE,),
    report=metrics_view,
)

"""modelbuild's rules: the target kinds BUILD.models may declare and the steps workers run.

Importing this package loads no toolchain; step modules import torch & co. inside run().
"""
from buildsys.rule_api import Flag, RuleSet, StepKind, TargetKind

from .prelude import HELPERS, PRELUDE
from .release.command import VERIFY_RELEASE
from .release.provenance import signing_key
from .report import metrics_view
from .steps.aoti import AotiConfig
from .steps.budget import BudgetConfig
from .steps.bundle import BundleConfig
from .steps.coreml_compress import CoremlCompressConfig
from .steps.coreml_convert import CoremlConvertConfig
from .steps.decompose import DecomposeConfig
from .steps.export import ExportConfig
from .steps.onnx_export import OnnxExportConfig
from .steps.partition import PartitionConfig
from .steps.quantize import QuantizeConfig
from .steps.release import ReleaseConfig
from .steps.verify import VerifyConfig
from .targets.artifacts import (
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
from .steps.llm.export import LlmExportConfig
from .steps.llm.inspect import LlmInspectConfig
from .steps.llm.lower import LlmLowerConfig
from .steps.llm.quantize import LlmQuantizeConfig
from .steps.llm.seq2seq_export import Seq2seqExportConfig
from .steps.llm.seq2seq_lower import Seq2seqLowerConfig
from .steps.llm.tokenizer import LlmTokenizerConfig
from .steps.llm.verify import LlmVerifyConfig
from .targets.llm import LlmProgram, plan_llm
from .targets.model import ModelDecl, plan_model
from .targets.seq2seq import Seq2seqProgram, plan_seq2seq
from .targets.release import ReleaseDecl, plan_release

_TORCH = ("torch",)
_ET = ("torch", "executorch", "torchao")

_KINDS = [
    TargetKind("model", ModelDecl, plan_model),
    TargetKind("pt2_program", Pt2Program, plan_pt2),
    TargetKind("executorch_program", ExecutorchProgram, plan_executorch),
    TargetKind("coreml_package", CoremlPackage, plan_coreml),
    TargetKind("onnx_model", OnnxModel, plan_onnx),
    TargetKind("aoti_package", AotiPackage, plan_aoti),
    TargetKind("llm_program", LlmProgram, plan_llm),
    TargetKind("seq2seq_program", Seq2seqProgram, plan_seq2seq),
    TargetKind("release", ReleaseDecl, plan_release),
]
# Each step's module, its config, and the distributions whose versions enter its action key.
_STEPS = [
    StepKind("export", "rules.steps.export", ExportConfig, _TORCH + ("safetensors",), weight_metric="nodes", light=True,
             warm_up="rules.lib.warm_export"),
    StepKind("quantize", "rules.steps.quantize", QuantizeConfig, _ET + ("numpy", "safetensors")),
    StepKind("decompose", "rules.steps.decompose", DecomposeConfig, _TORCH, weight_metric="nodes"),
    StepKind("partition", "rules.steps.partition", PartitionConfig, _ET + ("coremltools",),
             warm_up="rules.lib.warm_lowering"),
    StepKind("coreml_convert", "rules.steps.coreml_convert", CoremlConvertConfig, ("torch", "coremltools")),
    StepKind("coreml_compress", "rules.steps.coreml_compress", CoremlCompressConfig, ("coremltools", "scikit-learn", "numpy")),
    StepKind("onnx_export", "rules.steps.onnx_export", OnnxExportConfig, ("torch", "onnx", "onnxscript")),
    StepKind("aoti", "rules.steps.aoti", AotiConfig, ("torch",), host_bound=True),
    StepKind("verify", "rules.steps.verify", VerifyConfig, _ET + ("coremltools", "onnxruntime")),
    StepKind("budget", "rules.steps.budget", BudgetConfig, (), light=True),
    StepKind("bundle", "rules.steps.bundle", BundleConfig, _ET),
    StepKind("llm_inspect", "rules.steps.llm.inspect", LlmInspectConfig, ("torch", "transformers", "safetensors"), light=True),
    StepKind("llm_tokenizer", "rules.steps.llm.tokenizer", LlmTokenizerConfig, ("tokenizers",), light=True),
    StepKind("llm_export", "rules.steps.llm.export", LlmExportConfig, _ET + ("transformers", "safetensors")),
    StepKind("llm_quantize", "rules.steps.llm.quantize", LlmQuantizeConfig, _ET),
    StepKind("llm_lower", "rules.steps.llm.lower", LlmLowerConfig, _ET),
    StepKind("llm_verify", "rules.steps.llm.verify", LlmVerifyConfig, _ET + ("tokenizers", "safetensors")),
    StepKind("llm_seq2seq_export", "rules.steps.llm.seq2seq_export", Seq2seqExportConfig, _ET + ("transformers", "safetensors")),
    StepKind("llm_seq2seq_lower", "rules.steps.llm.seq2seq_lower", Seq2seqLowerConfig, _ET),
    StepKind("llm_seq2seq_verify", "rules.steps.llm.seq2seq_verify", LlmVerifyConfig, _ET + ("safetensors",)),
    StepKind("release", "rules.steps.release", ReleaseConfig,
             _ET + ("coremltools", "onnx", "onnxscript", "onnxruntime", "cryptography")),
]

RULESET = RuleSet(
    kinds={k.name: k for k in _KINDS},
    steps={s.name: s for s in _STEPS},
    worker="rules.worker",
    # What preload() imports (rules/worker.py), and the fork server imports for all local workers.
    worker_imports=("torch", "executorch.exir", "executorch.kernels.quantized"),
    light_imports=("torch",),  # what export needs: its workers start about 6 s before the others
    rule_roots=("rules",),
    prelude=PRELUDE,
    helpers={name: model for name, model, _, _ in HELPERS},
    flags=(Flag("--sign-key", "sign_key", "KEY", "sign release provenance with this ed25519 private key (PEM)",
                signing_key),),
    commands=(VERIFY_RELEASE,),
    report=metrics_view,
)

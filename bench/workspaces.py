"""The benchmark's workspaces, written from code (no downloads): the 4-model set, the plain script and
the DVC project that do the same job, and generated workspaces of many targets."""
from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# One module all four models import (the "shared model module" of the comment-only edit), and one
# module per model (the "real edit of one model").
SHARED = '''\
"""What the four models share: eval mode, and the first output of a transformers model."""
import torch
from torch import nn


class FirstOutput(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.eval()


class Logits(FirstOutput):
    def forward(self, pixel_values):
        return self.net(pixel_values, return_dict=False)[0]


class Hidden(FirstOutput):
    def forward(self, input_ids):
        return self.net(input_ids, return_dict=False)[0]


def seeded(factory):
    torch.manual_seed(0)
    return factory().eval()
'''
MODELS = {
    "transformer": '''\
"""The Core ML Tools guide's Transformer, as the example workspace has it (models/guide.py)."""
from models.guide import Transformer
from models.shared import seeded


def model():
    return seeded(Transformer)
''',
    "mobilenet": '''\
from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

from models.shared import Logits, seeded


def model():
    return seeded(lambda: Logits(MobileNetV2ForImageClassification(MobileNetV2Config())))
''',
    "resnet": '''\
from transformers import ResNetConfig, ResNetForImageClassification

from models.shared import Logits, seeded


def model():
    config = ResNetConfig(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512])
    return seeded(lambda: Logits(ResNetForImageClassification(config)))
''',
    "bert": '''\
from transformers import BertConfig, BertModel

from models.shared import Hidden, seeded


def model():
    config = BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
    return seeded(lambda: Hidden(BertModel(config)))
''',
}
INPUTS = {  # as BUILD.models says them, and as the script makes them
    "transformer": ('{"embedding": tensor([2, 32], fill = "rand")}', "torch.rand(2, 32)"),
    "mobilenet": ('{"pixel_values": tensor([1, 3, 224, 224])}', "torch.randn(1, 3, 224, 224)"),
    "resnet": ('{"pixel_values": tensor([1, 3, 224, 224])}', "torch.randn(1, 3, 224, 224)"),
    "bert": ('{"input_ids": tensor([1, 64], dtype = "int64", high = 1000)}', "torch.randint(0, 1000, (1, 64))"),
}

# The plain script: one process, sequential, export and lower each model, no verification. With a
# model's name it does that one only (a DVC stage).
SCRIPT = '''\
import importlib
import sys

import torch
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.exir import to_edge_transform_and_lower

INPUTS = {inputs}

for name in sys.argv[1:] or list(INPUTS):
    torch.manual_seed(0)
    model = importlib.import_module(f"models.{{name}}").model()
    example = (eval(INPUTS[name]),)
    program = torch.export.export(model, example)
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    with open(f"{{name}}.pte", "wb") as f:
        f.write(lowered.buffer)
'''


def four_models(dst: Path, python: str = "python") -> Path:
    """The 4-model set: BUILD.models (each model to an XNNPACK .pte, verified), script.py and dvc.yaml
    (whose stages run `python`)."""
    (dst / "models").mkdir(parents=True)
    (dst / "WORKSPACE.models").write_text("")
    (dst / "models" / "__init__.py").write_text("")
    shutil.copy(REPO / "models" / "layers.py", dst / "models" / "layers.py")
    shutil.copy(REPO / "models" / "transformer.py", dst / "models" / "guide.py")
    (dst / "models" / "shared.py").write_text(SHARED)
    build, stages = [], []
    for name, source in MODELS.items():
        (dst / "models" / f"{name}.py").write_text(source)
        build.append(f'model(name = "{name}", entry = "models.{name}:model", inputs = {INPUTS[name][0]})\n'
                     f'executorch_program(name = "{name}_xnnpack", model = ":{name}", backends = ["xnnpack"])\n')
        deps = ["script.py", "models/shared.py", f"models/{name}.py"] + (["models/guide.py", "models/layers.py"] if name == "transformer" else [])
        stages.append(f"  {name}:\n    cmd: {python} script.py {name}\n    deps: [{', '.join(deps)}]\n    outs: [{name}.pte]\n")
    (dst / "BUILD.models").write_text("\n".join(build))
    (dst / "script.py").write_text(SCRIPT.format(inputs={n: i[1] for n, i in INPUTS.items()}))
    (dst / "dvc.yaml").write_text("stages:\n" + "".join(stages))
    return dst


TINY = '''\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed({seed})
        self.fc1 = nn.Linear(16, {width})
        self.fc2 = nn.Linear({width}, 8)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))
'''
PACKAGE = '''\
model(name = "net", entry = "{module}:Net", inputs = {{"x": tensor([2, 16])}})
pt2_program(name = "net_pt2", model = ":net")
executorch_program(name = "net_xnnpack", model = ":net", backends = ["xnnpack"])
executorch_program(name = "net_portable", model = ":net")
onnx_model(name = "net_onnx", model = ":net")
'''


def generated(dst: Path, packages: int, shared_model: bool = False) -> Path:
    """`packages` packages of 5 targets each (a model and 4 artifacts). Each package has a model module
    of its own (a distinct model: 8 actions each, ~800 for 100 packages), or with shared_model, all use
    one module (one package's actions run, the rest are cache hits: a large workspace built quickly)."""
    dst.mkdir(parents=True)
    (dst / "WORKSPACE.models").write_text("")
    if shared_model:
        (dst / "tiny").mkdir()
        (dst / "tiny" / "__init__.py").write_text("")
        (dst / "tiny" / "net.py").write_text(TINY.format(seed=0, width=32))
    for i in range(packages):
        pkg = dst / f"p{i // 10:03d}" / f"m{i:05d}"
        pkg.mkdir(parents=True)
        for d in (pkg.parent, pkg):
            (d / "__init__.py").touch()
        if not shared_model:
            (pkg / "net.py").write_text(TINY.format(seed=i, width=16 + i % 48))
        module = "tiny.net" if shared_model else f"{pkg.parent.name}.{pkg.name}.net"
        (pkg / "BUILD.models").write_text(PACKAGE.format(module=module))
    return dst

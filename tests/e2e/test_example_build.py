"""A cold build of the example workspace: every artifact exists, loads and computes the model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import by_status, read_events, run_cli

from buildsys.load.target_graph import TargetGraph
from buildsys.load.workspace import Workspace
from rules import RULESET
from rules.lib.modelio import example_inputs, load_model

EXTS = {"pt2_program": ".pt2", "executorch_program": ".pte", "coreml_package": ".mlpackage", "onnx_model": ".onnx",
        "aoti_package": ".aoti.pt2", "release": ".tar.gz"}


def targets(ws: Path):
    graph = TargetGraph(Workspace(ws), RULESET)
    return [graph.targets[l] for l in graph.expand(["//..."])]


def artifact(ws: Path, target) -> Path:
    return ws / "out" / target.label.package / f"{target.label.name}{EXTS[target.kind]}"


def eager(ws: Path, graph_targets, model_label: str):
    model = next(t for t in graph_targets if str(t.label) == model_label).decl
    module = load_model(ws, model.entry, model.init_seed, None)
    args, kwargs = example_inputs(model.inputs, model.keyword_inputs)
    with torch.no_grad():
        return model, args, kwargs, module(*args, **kwargs)


def test_every_declared_artifact_is_built(example):
    ws, events = example
    declared = [t for t in targets(ws) if t.kind in EXTS]
    assert len(declared) == 21  # 20 artifacts in five formats, and the release of them all
    for t in declared:
        path = artifact(ws, t)
        assert path.exists(), f"{t.label} was not built at {path}"
    assert not [p for p in (ws / "out").rglob("*") if ".tmp-" in p.name], "temporary files left in out/"
    assert by_status(events, "failed") == set()


def test_identical_exports_are_one_action(example):
    ws, events = example
    exports = [e for e in events if e["step"] == "export"]
    assert len(exports) == 4  # one per model, however many artifacts share it
    transformer = next(e for e in exports if "//:transformer_pt2" in e["labels"])
    assert {"//:transformer_xnnpack", "//:transformer_portable", "//:transformer_mlpackage"} <= set(transformer["labels"])


@pytest.mark.parametrize("suffix", ["_xnnpack", "_portable"])
def test_pte_runs_in_executorch_and_matches_eager(example, suffix):
    from executorch.runtime import Runtime

    ws, _ = example
    all_targets = targets(ws)
    programs = [t for t in all_targets if t.kind == "executorch_program" and t.label.name.endswith(suffix)]
    assert len(programs) == 4
    runtime = Runtime.get()
    for t in programs:
        model, args, kwargs, expected = eager(ws, all_targets, str(t.label).replace(suffix, ""))
        method = runtime.load_program(artifact(ws, t)).load_method("forward")
        (got,) = method.execute([*args, *kwargs.values()])
        assert got.shape == expected.shape, t.label
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4, msg=f"{t.label} differs from eager")


def test_pt2_loads_and_matches_eager(example):
    ws, _ = example
    all_targets = targets(ws)
    for t in (t for t in all_targets if t.kind == "pt2_program"):
        model, args, kwargs, expected = eager(ws, all_targets, str(t.label).removesuffix("_pt2"))
        got = torch.export.load(artifact(ws, t)).module()(*args, **kwargs)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        assert str(ws) not in artifact(ws, t).read_bytes().decode("latin-1"), "absolute paths left in the .pt2"


def test_mlpackage_loads_with_expected_signature(example):
    import coremltools as ct

    ws, _ = example
    all_targets = targets(ws)
    packages = [t for t in all_targets if t.kind == "coreml_package"]
    assert len(packages) == 4
    for t in packages:
        model = next(m for m in all_targets if m.label == label_of(t)).decl
        spec = ct.models.MLModel(str(artifact(ws, t)), skip_model_load=True).get_spec()
        names = [i.name for i in spec.description.input]
        assert names == [*model.inputs, *model.keyword_inputs], t.label
        assert len(spec.description.output) == 1
        arrays = {i.name: i.type.multiArrayType for i in spec.description.input}
        for name, tensor in {**model.inputs, **model.keyword_inputs}.items():
            dynamic = model.dynamic_shapes.get(name, {})
            ranges = arrays[name].shapeRange.sizeRanges
            for axis, size in enumerate(tensor.shape):
                if axis in dynamic:  # a Dim becomes a Core ML shape range
                    assert (ranges[axis].lowerBound, ranges[axis].upperBound) == (dynamic[axis].min, dynamic[axis].max)
                else:
                    assert arrays[name].shape[axis] == size, (t.label, name, axis)


def label_of(target):
    from buildsys.labels import Label

    return Label.parse(target.decl.model, target.label.package)


def test_noop_build_runs_nothing_and_imports_no_toolchain(example):
    ws, _ = example
    probe = (
        "import sys, json; from modelbuild.__main__ import main; rc = main(['build', '//...', '--build-events', 'noop.jsonl']);"
        "heavy = sorted(m for m in ('torch', 'executorch', 'coremltools', 'torchao', 'numpy') if m in sys.modules);"
        "print(json.dumps({'rc': rc, 'heavy': heavy}))"
    )
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", probe], cwd=ws, capture_output=True, text=True, timeout=120)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"rc": 0, "heavy": []}, proc.stdout + proc.stderr
    events = read_events(ws / "noop.jsonl")
    assert events and {e["status"] for e in events} == {"cached"}
    assert "0 actions run" in proc.stdout and "up to date" in proc.stdout


def test_query_lists_targets_and_deps_without_toolchain(example):
    ws, _ = example
    proc = run_cli(ws, "query", "//models/...", "--output", "label")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [
        "//models/vision:convnet", "//models/vision:convnet_coreml", "//models/vision:convnet_mlpackage",
        "//models/vision:convnet_portable", "//models/vision:convnet_pt2", "//models/vision:convnet_xnnpack",
    ]
    proc = run_cli(ws, "query", "//:transformer_pt2", "--deps", "--output", "label")
    assert proc.stdout.split() == ["//:transformer", "//:transformer_pt2"]
    proc = run_cli(ws, "query", "--actions", "//:transformer_xnnpack", "//:transformer_mlpackage")
    steps = [line.split()[0] for line in proc.stdout.splitlines()]
    assert sorted(steps) == ["coreml_convert", "decompose", "export", "partition", "verify", "verify"], proc.stdout

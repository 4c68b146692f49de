"""Core ML packages of real architectures (transformers ResNet, MobileNetV2 and GPT-2 from tiny
configs), built through the real CLI; and the toolchain's failures explained in one message,
with the traceback left in the log.

The workspace is tests/workspaces/coreml: it is built once, with --keep-going, since two of its
targets fail on purpose (a toolchain failure and an op Core ML cannot convert).
"""
from __future__ import annotations

import importlib.util
import operator
import re
import shutil
from pathlib import Path

import pytest

from helpers import REPO, build, run_cli

WORKSPACE = REPO / "tests" / "workspaces" / "coreml"
PACKAGES = ["resnet_mlpackage", "resnet_int8", "mobilenet_mlpackage", "gpt2_mlpackage"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    ws = tmp_path_factory.mktemp("coreml") / "ws"
    shutil.copytree(WORKSPACE, ws, ignore=shutil.ignore_patterns("__pycache__", "cache", "out"))
    proc, events = build(ws, "//...", extra=("-j", "1", "--keep-going"))
    return ws, proc, events


@pytest.fixture(scope="module")
def nets():
    """The workspace's model module, imported under its own name (the repo has a `models` too)."""
    spec = importlib.util.spec_from_file_location("coreml_real_nets", WORKSPACE / "models" / "nets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def status(events, step: str, label: str) -> str:
    return next(e["status"] for e in events if e["step"] == step and e["label"] == f"//:{label}")


def panel(stdout: str, step: str, label: str) -> str:
    """The text of the failure panel of `step` for `label`, borders removed."""
    start = stdout.index(f"FAILED {step} //:{label}")
    end = stdout.index("╰", start)
    return "\n".join(line.strip("│ ").rstrip() for line in stdout[start:end].splitlines()[1:])


def test_batchnorm_cnns_and_gpt2_convert_to_mlpackages_that_pass_their_check(built):
    ws, proc, events = built
    for name in PACKAGES:
        assert (ws / "out" / f"{name}.mlpackage" / "Manifest.json").is_file(), proc.stdout
        assert status(events, "verify", name) == "ran", proc.stdout
    assert (ws / "out" / "resnet_coreml.pte").is_file()  # the .pte path of the same model still works
    shown = run_cli(ws, "show", "//:resnet_mlpackage").stdout
    assert "structural" in shown and "FAILED" not in shown


def test_gpt2_ops_core_ml_lacks_are_rewritten_as_ops_it_has(built):
    ws, _, _ = built
    shown = run_cli(ws, "show", "//:gpt2_mlpackage").stdout
    assert "rewritten_ops" in shown and "aten.alias.default" in shown and "aten.diff.default" in shown


def test_toolchain_failure_names_step_node_cause_and_workaround_and_keeps_traceback_in_log(built):
    ws, proc, events = built
    assert proc.returncode == 1
    assert status(events, "decompose", "gpt2_core_aten") == "failed"
    assert "Traceback" not in proc.stdout and "site-packages" not in proc.stdout
    text = panel(proc.stdout, "decompose", "gpt2_core_aten")
    assert "the decompose step failed at node 'view_6' (aten.view.default), in torch rather than" in text
    assert "Cannot view a tensor" in text
    assert "models/nets.py:" in text and "transformers/pytorch_utils.py:" in text  # the user's line, the op's
    assert "cause: torch 2.13's core-ATen decomposition of scaled_dot_product_attention" in text
    assert 'attn_implementation = "eager"' in text and "keep_ops" in text
    log = Path(re.search(r"full log:\s*(\S+)", text).group(1))
    assert "Traceback (most recent call last)" in log.read_text()


def test_the_workarounds_the_message_gives_work(built):
    ws, proc, events = built
    for name in ["gpt2_core_aten_keep_sdpa", "gpt2_eager_core_aten"]:
        assert (ws / "out" / f"{name}.pt2").is_file(), proc.stdout
        assert status(events, "verify", name) == "ran"  # numeric: runs against eager


def test_an_op_core_ml_cannot_convert_is_named_with_the_model_line(built):
    _, proc, _ = built
    text = panel(proc.stdout, "coreml_convert", "digamma_mlpackage")
    assert "cannot convert 1 op(s)" in text and "aten.digamma.default" in text
    assert "models/nets.py:" in text and "torch.digamma" in text
    assert "executorch_program(backends = [coreml()])" in text


def test_a_reloaded_program_is_the_program_that_was_saved(nets, tmp_path):
    """torch.export's round trip adds a getitem for every unused output of a multi-output op
    (batch norm's mean and variance); load_program takes them out again, and nothing else changes."""
    import torch

    from rules.programs import load_program, save_program

    def graph(ep):
        return [(n.name, n.op, str(n.target), str(n.args), len(n.users)) for n in ep.graph.nodes]

    ep = torch.export.export(nets.resnet().eval(), (torch.randn(2, 3, 32, 32),)).run_decompositions({})
    path = tmp_path / "program.pt2"
    save_program(ep, path)
    raw = torch.export.load(str(path))
    unused = [n.name for n in raw.graph.nodes if n.target is operator.getitem and not n.users]
    assert unused and all("_unused_" in name for name in unused)
    loaded = load_program(path)
    assert graph(loaded) == graph(ep)
    # Saving what was loaded writes the bytes that were saved.
    again = tmp_path / "again" / "program.pt2"
    again.parent.mkdir()
    save_program(loaded, again)
    assert again.read_bytes() == path.read_bytes()


def test_the_round_trip_failure_of_coremltools_is_explained(nets, tmp_path):
    """Issue 6's original failure, reproduced on the raw reload, reads as one message."""
    import coremltools as ct
    import torch

    from rules.programs import save_program
    from rules.toolchain_errors import explain

    ep = torch.export.export(nets.resnet().eval(), (torch.randn(2, 3, 32, 32),)).run_decompositions({})
    path = tmp_path / "program.pt2"
    save_program(ep, path)
    with pytest.raises(AssertionError) as caught:
        ct.convert(torch.export.load(str(path)), minimum_deployment_target=ct.target.iOS17)
    log = "ERROR - converting 'getitem' op (located at: '_native_batch_norm_legit_no_training_unused_1'):"
    text = explain("coreml_convert", caught.value, tmp_path, log)
    assert "at node '_native_batch_norm_legit_no_training_unused_1' (getitem), in coremltools" in text
    assert "cause: coremltools 9.0 cannot bind an output" in text
    assert "workaround: executorch_program(backends = [coreml()])" in text


def test_gpt2_rewritten_for_core_ml_computes_what_it_did(nets):
    import torch

    from rules.coreml_convert import convertible, unconvertible

    model = nets.GPT2().eval()
    tokens = torch.randint(0, 64, (2, 8))
    ep, rewritten = convertible(torch.export.export(model, (tokens,)).run_decompositions({}))
    assert "aten.alias.default" in rewritten and not unconvertible(ep)
    assert torch.equal(ep.module()(tokens), model(tokens))

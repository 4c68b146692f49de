"""Core ML packages of real architectures (transformers ResNet, MobileNetV2 and GPT-2 from tiny
configs), built through the real CLI; GPT-2's SDPA attention decomposed to core ATen; and the
toolchain's failures explained in one message, with the traceback left in the log.

The workspace is tests/workspaces/coreml: it is built once, with --keep-going, since three of its
targets fail on purpose (two toolchain failures and an op Core ML cannot convert).
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
    proc, events = build(ws, "//...", extra=("-j", "2", "--keep-going"))
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


def test_gpt2_with_sdpa_attention_decomposes_to_core_aten_and_matches_eager(built):
    """torch 2.13's core-ATen decomposition of SDPA failed on GPT-2 at batch 2 ("Cannot view a
    tensor ..."); decomposed as modelbuild corrects it, the .pt2 and the XNNPACK .pte build and
    match eager across the dynamic length, with every matmul and linear on XNNPACK."""
    ws, proc, events = built
    for name, ext in [("gpt2_core_aten", "pt2"), ("gpt2_xnnpack", "pte")]:
        assert (ws / "out" / f"{name}.{ext}").is_file(), proc.stdout
        assert status(events, "verify", name) == "ran"
        shown = run_cli(ws, "show", f"//:{name}").stdout
        assert "min (seq=2)" in shown and "max (seq=16)" in shown and "FAILED" not in shown, shown
    assert "compute ops (conv, matmul, linear) delegated  7 of 7 (100%)" in run_cli(ws, "show", "//:gpt2_xnnpack").stdout


def test_sdpa_decomposition_keeps_the_layout_the_program_was_traced_with(nets):
    """The corrected decomposition lays SDPA's result out as the exported op did; where torch's own
    already does (batch 1, nn.MultiheadAttention), the decomposed graph is torch's."""
    import torch
    from torch._decomp import global_decomposition_table
    from torch.export import default_decompositions

    from rules.lib.programs import sound_decompositions

    model = nets.GPT2().eval()
    tokens = torch.randint(0, 64, (2, 8))
    ep = torch.export.export(model, (tokens,))
    with pytest.raises(ValueError, match="Cannot view a tensor"):
        ep.run_decompositions(default_decompositions())
    registry = dict(global_decomposition_table["post_autograd"])
    with sound_decompositions():
        decomposed = ep.run_decompositions(default_decompositions())
    assert dict(global_decomposition_table["post_autograd"]) == registry  # torch's table restored
    assert torch.allclose(decomposed.module()(tokens), model(tokens), atol=1e-5)

    def graph(ep):
        return str(ep.run_decompositions(default_decompositions()).graph)

    for program in [torch.export.export(model, (tokens[:1],)),
                    torch.export.export(torch.nn.MultiheadAttention(32, 2).eval(), (torch.randn(8, 2, 32),) * 3,
                                        {"need_weights": False})]:
        theirs = graph(program)
        with sound_decompositions():
            assert graph(program) == theirs


def test_toolchain_failure_names_step_cause_and_workaround_and_keeps_traceback_in_log(built):
    ws, proc, events = built
    assert proc.returncode == 1
    assert status(events, "partition", "gpt2_vulkan") == "failed"
    assert "Traceback" not in proc.stdout and "site-packages" not in proc.stdout
    text = panel(proc.stdout, "partition", "gpt2_vulkan")
    assert "the partition step failed, in executorch rather than in the model's code:" in text
    assert "CalledProcessError: Command '['executorch/data/bin/flatc'" in text
    assert "cause: ExecuTorch 1.4.1's Vulkan serializer writes the delegate's graph as JSON for flatc" in text
    assert 'workaround: lower this model to another backend (backends = ["xnnpack"]' in text
    log = Path(re.search(r"full log:\s*(\S+)", text).group(1)).read_text()
    assert "Traceback (most recent call last)" in log and "cannot parse value starting with: -" in log


def test_an_op_executorch_lacks_is_named_with_cause_and_workaround(built):
    _, proc, events = built
    assert status(events, "partition", "digamma_portable") == "failed"
    text = panel(proc.stdout, "partition", "digamma_portable")
    assert "the partition step failed at op 'aten.digamma.default', in executorch" in text
    assert "cause: ExecuTorch programs hold core-ATen ops only" in text
    assert "pt2_program() or aoti_package()" in text


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

    from rules.lib.programs import load_program, save_program

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

    from rules.lib.programs import save_program
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

    from rules.steps.coreml_convert import convertible, unconvertible

    model = nets.GPT2().eval()
    tokens = torch.randint(0, 64, (2, 8))
    ep, rewritten = convertible(torch.export.export(model, (tokens,)).run_decompositions({}))
    assert "aten.alias.default" in rewritten and not unconvertible(ep)
    assert torch.equal(ep.module()(tokens), model(tokens))

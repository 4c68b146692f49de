"""The zoo: real architectures (ResNet- and MobileNetV2-style CNNs with BatchNorm, a BERT
encoder and a GPT-2 decoder on int64 tokens, the user's own MLP-Mixer) built to every format and
scheme the toolchain can lower, through the CLI, with --keep-going. Each artifact that runs on
Linux is checked numerically, each Core ML one structurally; what cannot be built fails, or is
refused at plan time, with a message that says why.

The workspace is tests/workspaces/zoo; bench/zoo_table.py prints its table."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import build, run_cli

from buildsys.cache.action_cache import ActionCache

WORKSPACE = Path(__file__).parents[1] / "workspaces" / "zoo"
EXT = {"pt2_program": ".pt2", "executorch_program": ".pte", "coreml_package": ".mlpackage",
       "onnx_model": ".onnx", "aoti_package": ".aoti.pt2"}

# What the toolchain cannot do, and what the failure must say: label -> (step, fragments).
EXPECTED_FAILURES = {
    # its one nn.Linear (the classifier) has 16 inputs, fewer than a group of 32
    "//:resnet_xnnpack_8da4w": ("quantize", ["quantized nothing", "group_size 32"]),
    # 4-bit k-means loses too much of a MobileNet's small depthwise and pointwise kernels
    "//:mobilenet_mlpackage_palettize4": ("verify", ["decompressed weights, SNR", "below the required 15 dB"]),
}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    ws = tmp_path_factory.mktemp("zoo")
    shutil.copytree(WORKSPACE, ws, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "out", "cache"))
    proc, events = build(ws, extra=("--keep-going", "-j", "2"))
    query = run_cli(ws, "query", "//...")
    kinds = dict(reversed(line.split()[:2]) for line in query.stdout.splitlines())  # label -> kind
    cache = ActionCache(ws / "cache" / "ac")
    results, failures = {}, {}
    for e in events:
        for label in e["labels"]:
            if e["status"] in ("ran", "cached"):
                results[(e["step"], label)] = cache.get(e["action_key"])
            elif e["status"] == "failed":
                failures.setdefault(label, (e["step"], e.get("error", "")))
    cache.close()
    artifacts = {label: kind for label, kind in kinds.items() if kind != "model"}
    return ws, proc, artifacts, results, failures


def artifact_path(ws: Path, label: str, kind: str) -> Path:
    return ws / "out" / f"{label.removeprefix('//:')}{EXT[kind]}"


def report(results, label: str) -> dict:
    return results[("verify", label)].metrics["verification"]


def test_the_zoo_has_every_architecture(zoo):
    _, _, artifacts, _, _ = zoo
    models = {label.removeprefix("//:").split("_")[0] for label in artifacts}
    assert models == {"resnet", "mobilenet", "bert", "gpt2", "mixer"}
    assert len(artifacts) >= 60


def test_only_the_known_failures_fail(zoo):
    ws, proc, artifacts, _, failures = zoo
    unexpected = {l: f"{step}: {msg.splitlines()[0] if msg else ''}" for l, (step, msg) in failures.items()
                  if l in artifacts and l not in EXPECTED_FAILURES}
    assert not unexpected, unexpected
    missing = [l for l, kind in artifacts.items() if l not in failures and not artifact_path(ws, l, kind).exists()]
    assert not missing, f"neither built nor failed: {missing}\n{proc.stdout[-2000:]}"


@pytest.mark.parametrize("label", sorted(EXPECTED_FAILURES))
def test_what_the_toolchain_cannot_do_fails_saying_why(zoo, label):
    ws, _, artifacts, _, failures = zoo
    step, fragments = EXPECTED_FAILURES[label]
    assert label in failures, f"{label} built: move it out of EXPECTED_FAILURES"
    assert failures[label][0] == step
    for fragment in fragments:
        assert fragment in failures[label][1]
    assert not artifact_path(ws, label, artifacts[label]).exists()


def runs_on_linux(label: str, kind: str) -> bool:
    return kind != "coreml_package" and not label.endswith("_coreml")


def test_every_artifact_that_runs_on_linux_is_checked_numerically(zoo):
    ws, _, artifacts, results, _ = zoo
    checked = 0
    for label, kind in artifacts.items():
        if not runs_on_linux(label, kind) or not artifact_path(ws, label, kind).exists():
            continue
        r = report(results, label)
        assert r["numeric"], (label, r)
        # the example, then every dynamic dim at its min and at its max (every zoo model has one)
        assert [c["case"].split(" ")[0] for c in r["cases"]] == ["example", "min", "max"], (label, r["cases"])
        floor = r["tolerance"]["min_snr_db"]
        assert all(c["snr_db"] >= floor for c in r["cases"]), (label, r["cases"])
        checked += 1
    assert checked >= 40


def test_every_core_ml_artifact_is_checked_structurally(zoo):
    ws, _, artifacts, results, _ = zoo
    checked = 0
    for label, kind in artifacts.items():
        if runs_on_linux(label, kind) or not artifact_path(ws, label, kind).exists():
            continue
        r = report(results, label)
        assert not r["numeric"] and "note" in r, (label, r)
        if kind == "executorch_program":
            assert "CoreMLBackend" in r["delegates"], (label, r)
        if label.endswith(("_int8", "_palettize4")):  # compressed weights, decompressed into the torch model
            assert r["compressed_weights"]["complete"], (label, r)
        checked += 1
    assert checked >= 15  # every model's Core ML .pte and .mlpackages


def test_token_models_are_checked_across_their_dynamic_length(zoo):
    _, _, _, results, _ = zoo
    for label in ("//:bert_xnnpack", "//:gpt2_xnnpack", "//:gpt2_onnx"):
        shapes = [c["shapes"]["input_ids"] for c in report(results, label)["cases"]]
        assert shapes == [[2, 8], [2, 2], [2, 16]], (label, shapes)


def test_refused_combinations_say_why_before_anything_runs(tmp_path):
    """The refused/ workspace declares what modelbuild refuses at plan time; each is planned alone."""
    ws = tmp_path / "refused"
    shutil.copytree(WORKSPACE / "refused", ws, ignore=shutil.ignore_patterns("__pycache__", "cache"))
    reasons = {
        "mixer_portable_8da4w": "needs backends = [\"xnnpack\"]",
        "mixer_portable_8da8w": "needs backends = [\"xnnpack\"]",
        "mixer_xnnpack_int4_weight_only": "cannot be lowered to ExecuTorch",
        "mixer_portable_int4_weight_only": "cannot be lowered to ExecuTorch",
    }
    declared = run_cli(ws, "query", "//:all", "--output", "label").stdout.split()
    assert {l for l in declared if l.startswith("//:mixer_")} == {f"//:{n}" for n in reasons}
    for name, reason in reasons.items():
        proc = run_cli(ws, "query", "--actions", f"//:{name}")
        assert proc.returncode != 0, name
        assert f"'{name}'" in proc.stderr + proc.stdout and reason in proc.stderr + proc.stdout, proc.stderr

"""Affected targets for CI: `query --rdeps FILE_OR_LABEL...` and `query --affected-since GIT_REV`, on a
git copy of the example workspace, for each kind of edit: a shared layer module, one model's module,
a weights file, a BUILD.models field and a .star macro. Neither imports torch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, copy_example, run_cli

TRANSFORMER = ["//:transformer", "//:transformer_coreml", "//:transformer_mlpackage", "//:transformer_onnx",
               "//:transformer_portable", "//:transformer_pt2", "//:transformer_xnnpack"]
VISION = ["//models/vision:convnet", "//models/vision:convnet_coreml", "//models/vision:convnet_mlpackage",
          "//models/vision:convnet_portable", "//models/vision:convnet_pt2", "//models/vision:convnet_xnnpack"]


def git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    ws = copy_example(tmp_path_factory.mktemp("affected") / "ws")
    from safetensors.numpy import save_file
    import numpy as np

    save_file({"scale": np.ones(4, dtype=np.float32)}, str(ws / "models" / "vision" / "scale.safetensors"))
    with open(ws / "models" / "vision" / "BUILD.models", "a") as f:
        f.write('model(name = "weighted", entry = "models.vision.convnet:ConvNet", weights = "scale.safetensors",\n'
                '      inputs = {"x": tensor([1, 3, 32, 32])})\npt2_program(name = "weighted_pt2", model = ":weighted")\n')
    git(ws, "init", "-q")
    git(ws, "add", "-A")
    git(ws, "-c", "user.email=ci@example.com", "-c", "user.name=ci", "commit", "-qm", "base")
    return ws


def labels(ws: Path, *args: str) -> list[str]:
    proc = run_cli(ws, "query", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.split()


def edit(ws: Path, path: str, old: str, new: str) -> None:
    file = ws / path
    text = file.read_text()
    assert old in text, (path, old)
    file.write_text(text.replace(old, new, 1))


@pytest.fixture
def ws(repo):
    yield repo
    git(repo, "checkout", "-q", "--", ".")
    git(repo, "clean", "-qfd", "--", ".")


def test_nothing_changed_affects_nothing(ws):
    assert labels(ws, "--affected-since", "HEAD") == []


def test_a_shared_layer_module(ws):
    edit(ws, "models/layers.py", "return self.wo(attention)", "return self.wo(attention) * 0.5")
    assert labels(ws, "--affected-since", "HEAD") == ["//:release"] + TRANSFORMER
    assert labels(ws, "--rdeps", "models/layers.py") == ["//:release"] + TRANSFORMER


def test_one_models_module(ws):
    edit(ws, "models/vision/convnet.py", "return self.linear(y)", "return self.linear(y) * 2")
    vision = ["//:release"] + VISION + ["//models/vision:weighted", "//models/vision:weighted_pt2"]
    assert labels(ws, "--affected-since", "HEAD") == vision
    assert labels(ws / "models" / "vision", "--rdeps", "convnet.py") == vision  # relative to the directory


def test_a_comment_or_blank_line_affects_nothing(ws):
    """What the build does not rebuild for (digests.digest_code), CI need not build either."""
    edit(ws, "models/vision/convnet.py", "import torch", "import torch  # edited\n\n")
    edit(ws, "models/layers.py", "return self.wo(attention)", "return self.wo(attention)  # the output projection")
    assert labels(ws, "--affected-since", "HEAD") == []
    edit(ws, "models/layers.py", "# the output projection", "# the output projection\n        pass")
    assert labels(ws, "--affected-since", "HEAD") == ["//:release"] + TRANSFORMER  # code after all


def test_a_weights_file(ws):
    from safetensors.numpy import save_file
    import numpy as np

    save_file({"scale": np.full(4, 2.0, dtype=np.float32)}, str(ws / "models" / "vision" / "scale.safetensors"))
    expected = ["//:release", "//models/vision:weighted", "//models/vision:weighted_pt2"]  # the release ships //...
    assert labels(ws, "--affected-since", "HEAD") == expected
    assert labels(ws, "--rdeps", "models/vision/scale.safetensors") == expected


def test_a_build_field_affects_that_target_and_what_depends_on_it(ws):
    edit(ws, "BUILD.models", 'compute_precision = "float16"', 'compute_precision = "float32"')
    assert labels(ws, "--affected-since", "HEAD") == ["//:release", "//:transformer_mlpackage"]
    assert labels(ws, "--rdeps", "//:transformer_mlpackage") == ["//:release", "//:transformer_mlpackage"]


def test_a_star_macro_affects_the_targets_it_declares(ws):
    edit(ws, "defs.star", 'coreml_package(name = name + "_mlpackage", model = ":" + name)',
         'coreml_package(name = name + "_mlpackage", model = ":" + name, compute_precision = "float32")')
    assert labels(ws, "--affected-since", "HEAD") == ["//:release", "//models/vision:convnet_mlpackage"]
    # Every target its BUILD.models declares reads it (a macro can declare any of them).
    assert labels(ws, "--rdeps", "defs.star") == ["//:release"] + VISION + ["//models/vision:weighted",
                                                                           "//models/vision:weighted_pt2"]


def test_a_new_commit_and_bad_input(ws):
    edit(ws, "models/layers.py", "return self.wo(attention)", "return self.wo(attention) * 0.5")
    git(ws, "-c", "user.email=ci@example.com", "-c", "user.name=ci", "commit", "-qam", "edit")
    try:
        assert labels(ws, "--affected-since", "HEAD~1") == ["//:release"] + TRANSFORMER
        assert labels(ws, "--affected-since", "HEAD") == []
    finally:
        git(ws, "reset", "-q", "--hard", "HEAD~1")
    proc = run_cli(ws, "query", "--affected-since", "nope")
    assert proc.returncode == 2 and proc.stderr.startswith("ERROR: --affected-since nope: not a commit"), proc.stderr
    proc = run_cli(ws, "query", "--rdeps", "models/nothing.py")
    assert proc.returncode == 2 and "'models/nothing.py' is neither a file nor a target" in proc.stderr, proc.stderr


def test_neither_imports_the_toolchain(ws):
    probe = ("import sys; from modelbuild.__main__ import main; code = main(sys.argv[1:]); "
             "print('imported:', sorted(m for m in ('torch', 'executorch', 'coremltools') if m in sys.modules)); sys.exit(code)")
    for args in (["--rdeps", "models/layers.py"], ["--affected-since", "HEAD"]):
        proc = subprocess.run([sys.executable, "-c", probe, "query", *args], cwd=ws, capture_output=True, text=True,
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(ws)})
        assert proc.returncode == 0 and proc.stdout.strip().endswith("imported: []"), proc.stdout + proc.stderr

"""Each bad declaration gives one clear message with file:line, a non-zero status, no traceback."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import run_cli

GOOD_MODEL = '''model(
    name = "m",
    entry = "models.sincos:SinCos",
    inputs = {"x": tensor([4, 4]), "y": tensor([4, 4])},
)
'''

CASES = {
    "syntax_error": (
        GOOD_MODEL + 'pt2_program(name = "p", model = = ":m")\n',
        r"BUILD\.models:6:33",
        r"Parse error",
    ),
    "unknown_field": (
        GOOD_MODEL + 'coreml_package(\n    name = "c",\n    model = ":m",\n    quantise = "int8",\n)\n',
        r"BUILD\.models:6\b",
        r"unexpected field 'quantise'.*allowed fields: compress, compute_precision",
    ),
    "misspelled_field": (
        GOOD_MODEL + 'coreml_package(name = "c", model = ":m", compute_precison = "float32")\n',
        r"BUILD\.models:6\b",
        r"unexpected field 'compute_precison' \(did you mean 'compute_precision'\?\)",
    ),
    "wrong_type": (
        GOOD_MODEL + 'executorch_program(name = "e", model = ":m", backends = "xnnpack")\n',
        r"BUILD\.models:6\b",
        r"field 'backends': Input should be a valid list",
    ),
    "wrong_tensor_type": (
        'model(name = "m", entry = "models.sincos:SinCos",\n      inputs = {"x": tensor(["four", 4]), "y": tensor([4, 4])})\n',
        r"BUILD\.models:1\b",
        r"field 'inputs\.x\.shape\[0\]'",
    ),
    "unknown_label": (
        GOOD_MODEL + 'pt2_program(name = "p", model = ":mm")\n',
        r"BUILD\.models:6\b",
        r"depends on '//:mm', which does not exist \(did you mean 'm'\?\)",
    ),
    "unknown_package": (
        GOOD_MODEL + 'pt2_program(name = "p", model = "//nowhere:m")\n',
        r"BUILD\.models:6\b",
        r"no package '//nowhere'",
    ),
    "cycle": (
        'pt2_program(name = "a", model = ":b")\npt2_program(name = "b", model = ":a")\n',
        r"BUILD\.models:[12]\b",
        r"dependency cycle: //:(a|b) -> //:(a|b) -> //:(a|b)",
    ),
    "missing_entry_module": (
        'model(name = "m", entry = "models.nosuch:Net", inputs = {"x": tensor([2])})\npt2_program(name = "p", model = ":m")\n',
        r"BUILD\.models:1\b",
        r"entry module 'models\.nosuch' not found",
    ),
    "dynamic_dim_of_size_one": (
        'model(name = "m", entry = "models.sincos:SinCos",\n      inputs = {"x": tensor([1, 4]), "y": tensor([1, 4])},\n'
        '      dynamic_shapes = {"x": {0: dim("b", max = 8)}})\n',
        r"BUILD\.models:1\b",
        r"example size is 1; torch\.export specializes sizes 0 and 1",
    ),
    "duplicate_name": (
        GOOD_MODEL + GOOD_MODEL,
        r"BUILD\.models:6\b",
        r"duplicate target name 'm' \(first declared at BUILD\.models:1\)",
    ),
    "coreml_not_first": (
        GOOD_MODEL + 'executorch_program(name = "e", model = ":m", backends = ["xnnpack", coreml()])\n',
        r"BUILD\.models:6\b",
        r"coreml\(\) must come first in backends",
    ),
    "int4_weight_only_to_executorch": (
        GOOD_MODEL + 'executorch_program(name = "e", model = ":m", quantize = "torchao_int4_weight_only")\n',
        r"BUILD\.models:6\b",
        r"cannot be lowered to ExecuTorch",
    ),
    "option_not_for_scheme": (
        GOOD_MODEL + 'pt2_program(name = "p", model = ":m", quantize = quantization("pt2e_int8_dynamic", group_size = 64))\n',
        r"BUILD\.models:6\b",
        r"group_size applies only to schemes",
    ),
    "release_lists_a_model": (
        GOOD_MODEL + 'release(name = "r", artifacts = [":m"], version = "1.0")\n',
        r"BUILD\.models:6\b",
        r"release\(\) 'r': artifacts lists //:m, a model\(\), but a release ships artifacts",
    ),
    "release_unknown_label": (
        GOOD_MODEL + 'pt2_program(name = "p", model = ":m")\nrelease(name = "r", artifacts = [":pp"], version = "1.0")\n',
        r"BUILD\.models:7\b",
        r"depends on '//:pp', which does not exist \(did you mean 'p'\?\)",
    ),
    "release_pattern_of_nothing": (
        GOOD_MODEL + 'release(name = "r", artifacts = ["//nowhere/..."], version = "1.0")\n',
        r"BUILD\.models:6\b",
        r"release\(\) 'r': pattern '//nowhere/\.\.\.' matches no package",
    ),
    "release_version_not_a_string": (
        GOOD_MODEL + 'pt2_program(name = "p", model = ":m")\nrelease(name = "r", artifacts = [":p"], version = 1)\n',
        r"BUILD\.models:7\b",
        r"field 'version': .*version must be a string such as \"1\.4\.0\", got int 1",
    ),
    "release_same_path_twice": (
        GOOD_MODEL + 'aoti_package(name = "x", model = ":m")\npt2_program(name = "x.aoti", model = ":m")\n'
        'release(name = "r", artifacts = [":x", ":x.aoti"], version = "1.0")\n',
        r"BUILD\.models:8\b",
        r"//:x\.aoti and //:x would both be artifacts/x\.aoti\.pt2 in the archive",
    ),
    "unknown_function": (
        'modle(name = "m")\n',
        r"BUILD\.models:1:1",
        r"Variable `modle` not found, did you mean `model`",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_declaration(tmp_path: Path, case: str):
    source, where, what = CASES[case]
    (tmp_path / "WORKSPACE.models").write_text("")
    (tmp_path / "BUILD.models").write_text(source)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("")
    (tmp_path / "models" / "sincos.py").write_text("import torch\nclass SinCos(torch.nn.Module):\n    pass\n")
    proc = run_cli(tmp_path, "build", "//...")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.startswith("ERROR:"), proc.stderr
    assert re.search(where, proc.stderr), proc.stderr
    assert re.search(what, proc.stderr, re.S), proc.stderr
    assert not (tmp_path / "cache" / "cas").exists() or not any((tmp_path / "cache" / "cas").iterdir())


def test_macro_errors_name_the_call_site_and_the_macro(tmp_path: Path):
    (tmp_path / "WORKSPACE.models").write_text("")
    (tmp_path / "defs.star").write_text('def twice(name):\n    model(name = name, entry = "a:b", inputs = {}, bogus = 1)\n')
    (tmp_path / "BUILD.models").write_text('load("//:defs.star", "twice")\n\ntwice("m")\n')
    proc = run_cli(tmp_path, "query", "//...")
    assert proc.returncode == 2
    assert "BUILD.models:3 (via defs.star:2)" in proc.stderr, proc.stderr
    assert "unexpected field 'bogus'" in proc.stderr


def test_verbose_shows_the_traceback(tmp_path: Path):
    (tmp_path / "WORKSPACE.models").write_text("")
    (tmp_path / "BUILD.models").write_text('pt2_program(name = "p", model = ":nope")\n')
    proc = run_cli(tmp_path, "--verbose", "query", "//...")
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_no_workspace(tmp_path: Path):
    proc = run_cli(tmp_path, "build")
    assert proc.returncode == 2 and "no WORKSPACE.models found" in proc.stderr

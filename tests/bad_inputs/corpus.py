"""The bad-input corpus: one row per kind of bad input, run through the CLI by tests/e2e/test_bad_inputs.py.

A case starts from workspace/ (the good target //:p of model //:m, and the modules in models/),
replaces its BUILD.models with `build` when given, and adds `files`: text, bytes, Link(target) for
a symlink (a target may start with {outside}, a directory beside the workspace holding
secret.txt, defs.star, w.safetensors, c.npz and pkg/BUILD.models), or None to delete a file.
The CLI (`args`, default `build //...`, with the corpus's shared cache) must exit with `exit`
(2: the user's mistake; 1: a build failure) and say `where` (file:line, or the label) and `what`
(regular expressions), in one message with no Python traceback.

To add a case, add a row.
"""
from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from dataclasses import dataclass, field

CATEGORIES = ("syntax", "types", "fields", "labels", "cycles", "entries", "weights", "data", "calibration",
              "paths", "symlinks", "encodings", "bounds", "environment", "language models")


@dataclass(frozen=True)
class Link:
    target: str


@dataclass(frozen=True)
class Case:
    category: str
    name: str
    exit: int
    where: str
    what: str
    build: str | bytes | Link | None = None  # BUILD.models (None: the good one)
    files: dict = field(default_factory=dict)
    args: tuple = ("build", "//...")
    env: dict = field(default_factory=dict)  # {workspace} is the case's workspace


def safetensors(tensors: dict[str, list[float]]) -> bytes:
    """A safetensors file of float32 vectors, written by hand (the test process imports no torch)."""
    header, data = {}, b""
    for name, values in tensors.items():
        raw = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": [len(values)], "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + data


def _zip() -> bytes:  # what torch.save writes: a zip archive holding a pickle
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"fc.weight": [0.0] * 8}))
    return buf.getvalue()


GOOD = 'model(name = "m", entry = "models.sincos:SinCos", inputs = {"x": tensor([4, 4]), "y": tensor([4, 4])})\n'
TINY = 'model(name = "t", entry = "models.tiny:Tiny", inputs = {"x": tensor([2, 4])}, %s)\n'
STATIC = 'executorch_program(name = "e", model = ":m", quantize = quantization("pt2e_int8_static", calibration = %s))\n'
OUTSIDE = "{outside}"
NESTED = 'def f():\n    x = []\n    for i in range(200000):\n        x = [x]\n    return %s\nf()\n'
LOOP = 'def spin():\n    for i in range(1000000000):\n        pass\n'
PT2 = 'pt2_program(name = "p", model = ":%s", verify = False)\n'
LM = 'model(name = "lm", entry = "models.lm:%s", inputs = {"input_ids": tensor([1, 4], dtype = "int64", high = 64)})\n'
LLM = 'llm_program(name = "l", model = ":lm", tokenizer = "tok.json", %s)\n'


def word_tokenizer(top: int) -> str:
    """A Hugging Face tokenizer.json (word level) whose ids go up to `top`."""
    vocab = {"<s>": 1, "</s>": 2, "a": 3, "big": top}
    return json.dumps({"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
                       "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None, "decoder": None,
                       "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<s>"}})


CASES = [
    # syntax
    Case("syntax", "syntax_error", 2, r"BUILD\.models:2:33", r"Parse error", GOOD + 'pt2_program(name = "p", model = = ":m")\n'),
    Case("syntax", "unclosed_call", 2, r"BUILD\.models:1:\d+", r"Parse error: unexpected new line", 'model(name = "m"\n'),
    Case("syntax", "reserved_keyword", 2, r"BUILD\.models:1:1", r"reserved keyword `while`", "while True:\n    pass\n"),
    Case("syntax", "unknown_function", 2, r"BUILD\.models:1:1", r"Variable `modle` not found, did you mean `model`", 'modle(name = "m")\n'),
    Case("syntax", "runtime_type_error", 2, r"BUILD\.models:1:5", r"`\+` not supported for types `int` and `string`", 'x = 1 + "a"\n'),
    Case("syntax", "syntax_error_in_star", 2, r"defs\.star:1:5", r"Parse error", 'load("//:defs.star", "X")\n', {"defs.star": "X = = 1\n"}),
    # types
    Case("types", "wrong_type", 2, r"BUILD\.models:2\b", r"field 'backends': expected a valid list",
         GOOD + 'executorch_program(name = "e", model = ":m", backends = "xnnpack")\n'),
    Case("types", "wrong_tensor_type", 2, r"BUILD\.models:1\b", r"field 'inputs\.x\.shape\[0\]'",
         'model(name = "m", entry = "models.sincos:SinCos", inputs = {"x": tensor(["four", 4]), "y": tensor([4, 4])})\n'),
    Case("types", "unknown_dtype", 2, r"BUILD\.models:1\b", r"field 'inputs\.x\.dtype': 'float128' is not allowed \(did you mean 'float32'\?\); allowed: float32, ",
         'model(name = "m", entry = "models.sincos:SinCos", inputs = {"x": tensor([4], dtype = "float128"), "y": tensor([4])})\n'),
    Case("types", "function_as_value", 2, r"BUILD\.models:3\b", r"a function cannot be a rule's field value",
         'def f():\n    pass\nmodel(name = "m", entry = f, inputs = {"x": tensor([2])})\n'),
    Case("types", "name_not_a_string", 2, r"BUILD\.models:1\b", r"field 'name': expected a valid string",
         'model(name = 3, entry = "models.sincos:SinCos", inputs = {"x": tensor([2])})\n'),
    Case("types", "release_version_not_a_string", 2, r"BUILD\.models:3\b", r"version must be a string such as \"1\.4\.0\", got int 1",
         GOOD + PT2 % "m" + 'release(name = "r", artifacts = [":p"], version = 1)\n'),
    # fields
    Case("fields", "unknown_field", 2, r"BUILD\.models:2\b", r"unexpected field 'quantise'.*allowed fields: compress, compute_precision",
         GOOD + 'coreml_package(\n    name = "c",\n    model = ":m",\n    quantise = "int8",\n)\n'),
    Case("fields", "misspelled_field", 2, r"BUILD\.models:2\b", r"unexpected field 'compute_precison' \(did you mean 'compute_precision'\?\)",
         GOOD + 'coreml_package(name = "c", model = ":m", compute_precison = "float32")\n'),
    Case("fields", "missing_field", 2, r"BUILD\.models:1\b", r"model\(\) is missing the required field 'entry'",
         'model(name = "m", inputs = {"x": tensor([2])})\n'),
    Case("fields", "option_not_for_scheme", 2, r"BUILD\.models:2\b", r"group_size applies only to schemes",
         GOOD + 'pt2_program(name = "p", model = ":m", quantize = quantization("pt2e_int8_dynamic", group_size = 64))\n'),
    Case("fields", "dynamic_dim_of_size_one", 2, r"BUILD\.models:1\b", r"example size is 1; torch\.export specializes sizes 0 and 1",
         'model(name = "m", entry = "models.sincos:SinCos", inputs = {"x": tensor([1, 4]), "y": tensor([1, 4])},\n'
         '      dynamic_shapes = {"x": {0: dim("b", max = 8)}})\n'),
    Case("fields", "dynamic_shapes_of_no_input", 2, r"BUILD\.models:1\b", r"dynamic_shapes names input 'z'",
         'model(name = "m", entry = "models.sincos:SinCos", inputs = {"x": tensor([4]), "y": tensor([4])},\n'
         '      dynamic_shapes = {"z": {0: dim("b", max = 8)}})\n'),
    Case("fields", "invalid_name", 2, r"BUILD\.models:1\b", r"model\(\) has an invalid name: invalid target name in label '//:a b'",
         'model(name = "a b", entry = "models.sincos:SinCos", inputs = {"x": tensor([2])})\n'),
    Case("fields", "duplicate_name", 2, r"BUILD\.models:2\b", r"duplicate target name 'm' \(first declared at BUILD\.models:1\)", GOOD + GOOD),
    Case("fields", "rule_at_load_time", 2, r"defs\.star:2\b", r"model\(\) may only be called while a BUILD\.models file is evaluated",
         'load("//:defs.star", "X")\n', {"defs.star": 'X = 1\nmodel(name = "m", entry = "a:b", inputs = {})\n'}),
    Case("fields", "bad_field_in_macro", 2, r"BUILD\.models:3 \(via defs\.star:2\)", r"unexpected field 'bogus'",
         'load("//:defs.star", "twice")\n\ntwice("m")\n',
         {"defs.star": 'def twice(name):\n    model(name = name, entry = "a:b", inputs = {}, bogus = 1)\n'}),
    Case("fields", "coreml_not_first", 2, r"BUILD\.models:2\b", r"coreml\(\) must come first in backends",
         GOOD + 'executorch_program(name = "e", model = ":m", backends = ["xnnpack", coreml()])\n'),
    Case("fields", "int4_weight_only_to_executorch", 2, r"BUILD\.models:2\b", r"cannot be lowered to ExecuTorch",
         GOOD + 'executorch_program(name = "e", model = ":m", quantize = "torchao_int4_weight_only")\n'),
    # labels
    Case("labels", "unknown_label", 2, r"BUILD\.models:2\b", r"depends on '//:mm', which does not exist \(did you mean 'm'\?\)",
         GOOD + 'pt2_program(name = "p", model = ":mm")\n'),
    Case("labels", "unknown_package", 2, r"BUILD\.models:2\b", r"no package '//nowhere'", GOOD + 'pt2_program(name = "p", model = "//nowhere:m")\n'),
    Case("labels", "malformed_label", 2, r"BUILD\.models:2\b", r"invalid label 'models/m'", GOOD + 'pt2_program(name = "p", model = "models/m")\n'),
    Case("labels", "unknown_target_asked_for", 2, r"'//'", r"no target 'pp' in package '//' \(did you mean 'p'\?\)", args=("build", "//:pp")),
    Case("labels", "pattern_of_nothing_asked_for", 2, r"'//nowhere/\.\.\.'", r"matches no package", args=("build", "//nowhere/...")),
    Case("labels", "relative_name_of_nothing", 2, r"'nowhere'", r"no target 'nowhere' in package '//'; it has m, p$",
         args=("build", "nowhere")),  # relative to the current directory's package, as in Bazel
    Case("labels", "not_a_pattern", 2, r"'//a::b'", r"invalid target name in label '//a::b'", args=("build", "a::b")),
    Case("labels", "release_unknown_label", 2, r"BUILD\.models:3\b", r"depends on '//:pp', which does not exist \(did you mean 'p'\?\)",
         GOOD + PT2 % "m" + 'release(name = "r", artifacts = [":pp"], version = "1.0")\n'),
    Case("labels", "release_pattern_of_nothing", 2, r"BUILD\.models:2\b", r"release\(\) 'r': pattern '//nowhere/\.\.\.' matches no package",
         GOOD + 'release(name = "r", artifacts = ["//nowhere/..."], version = "1.0")\n'),
    Case("labels", "release_lists_a_model", 2, r"BUILD\.models:2\b", r"artifacts lists //:m, a model\(\), but a release ships artifacts",
         GOOD + 'release(name = "r", artifacts = [":m"], version = "1.0")\n'),
    Case("labels", "release_same_path_twice", 2, r"BUILD\.models:4\b", r"//:x\.aoti and //:x would both be artifacts/x\.aoti\.pt2",
         GOOD + 'aoti_package(name = "x", model = ":m")\npt2_program(name = "x.aoti", model = ":m")\n'
         'release(name = "r", artifacts = [":x", ":x.aoti"], version = "1.0")\n'),
    # cycles
    Case("cycles", "cycle", 2, r"BUILD\.models:[12]\b", r"dependency cycle: //:(a|b) -> //:(a|b) -> //:(a|b)",
         'pt2_program(name = "a", model = ":b")\npt2_program(name = "b", model = ":a")\n'),
    Case("cycles", "self_dependency", 2, r"BUILD\.models:2\b", r"dependency cycle: //:p -> //:p", GOOD + 'pt2_program(name = "p", model = ":p")\n'),
    Case("cycles", "load_cycle", 2, r"b\.star:1:1", r"load\(\) cycle: a\.star -> b\.star -> a\.star", 'load("//:a.star", "x")\n',
         {"a.star": 'load("//:b.star", "y")\nx = 1\n', "b.star": 'load("//:a.star", "x")\ny = 1\n'}),
    # entries
    Case("entries", "missing_entry_module", 2, r"BUILD\.models:1\b", r"entry module 'models\.nosuch' not found",
         'model(name = "m", entry = "models.nosuch:Net", inputs = {"x": tensor([2])})\n' + PT2 % "m"),
    Case("entries", "malformed_entry", 2, r"BUILD\.models:1\b", r"entry must be 'package\.module:callable'",
         'model(name = "m", entry = "models.sincos", inputs = {"x": tensor([2])})\n'),
    Case("entries", "entry_not_in_module", 2, r"BUILD\.models:1\b",  # read from the source at load, not at export
         r"module 'models\.sincos' defines no 'Sincos' \(did you mean 'SinCos'\?\); it defines: SinCos, ",
         'model(name = "m", entry = "models.sincos:Sincos", inputs = {"x": tensor([4])})\n' + PT2 % "m"),
    Case("entries", "model_raises", 1, r"FAILED export //:p", r"RuntimeError\): a and b must have same reduction dim.*In your code.*models/broken\.py\", line 8, in forward",
         'model(name = "m", entry = "models.broken:Broken", inputs = {"x": tensor([4, 4])})\n' + PT2 % "m"),
    # weights
    Case("weights", "weights_absolute", 2, r"BUILD\.models:1\b", r"weights file '/etc/passwd\.safetensors' is outside the package '//'",
         TINY % 'weights = "/etc/passwd.safetensors"'),
    Case("weights", "weights_in_parent_dir", 2, r"sub/BUILD\.models:1\b", r"weights file '\.\./w\.safetensors' \(resolving to .*/ws/w\.safetensors\) is outside the package '//sub'",
         files={"sub/BUILD.models": TINY % 'weights = "../w.safetensors"', "w.safetensors": safetensors({"fc.bias": [0, 0]})},
         args=("build", "//sub:all")),
    Case("weights", "weights_missing", 2, r"BUILD\.models:1\b", r"weights file not found in package '//': nope\.safetensors",
         TINY % 'weights = "nope.safetensors"'),
    Case("weights", "weights_not_safetensors_suffix", 2, r"BUILD\.models:1\b", r"weights must be a \.safetensors file, got 'w\.pt'",
         TINY % 'weights = "w.pt"'),
    Case("weights", "weights_a_pickle", 2, r"BUILD\.models:1\b", r"'w\.safetensors' is not a safetensors file .*a Python pickle.*save_file",
         TINY % 'weights = "w.safetensors"', {"w.safetensors": pickle.dumps({"fc.weight": [0.0] * 8}, protocol=2)}),
    Case("weights", "weights_a_torch_save_zip", 2, r"BUILD\.models:1\b", r"is not a safetensors file .*a zip archive: what torch\.save writes",
         TINY % 'weights = "w.safetensors"', {"w.safetensors": _zip()}),
    Case("weights", "weights_empty", 2, r"BUILD\.models:1\b", r"is not a safetensors file \(0 bytes",
         TINY % 'weights = "w.safetensors"', {"w.safetensors": b""}),
    Case("weights", "weights_do_not_fit", 1, r"FAILED export //:p", r"weights w\.safetensors do not fit models\.tiny:Tiny: .*fc\.weight",
         TINY % 'weights = "w.safetensors"' + PT2 % "t", {"w.safetensors": safetensors({"fc.bias": [0, 0]})}),
    # data
    Case("data", "data_escapes_the_workspace", 2, r"BUILD\.models:1\b", r"data file '(\.\./)+etc/passwd' \(resolving to /etc/passwd\) is outside the package '//'",
         TINY % ('data = ["%s"]' % ("../" * 30 + "etc/passwd"))),
    Case("data", "data_absolute", 2, r"BUILD\.models:1\b", r"data file '/etc/hostname' is outside the package", TINY % 'data = ["/etc/hostname"]'),
    Case("data", "data_missing", 2, r"BUILD\.models:1\b", r"data file not found in package '//': nope\.bin", TINY % 'data = ["nope.bin"]'),
    Case("data", "data_in_a_subpackage", 2, r"BUILD\.models:1\b", r"data file 'sub/d\.bin' is in the package '//sub', not '//'",
         TINY % 'data = ["sub/d.bin"]', {"sub/d.bin": "x", "sub/BUILD.models": ""}),
    Case("data", "data_a_directory", 2, r"BUILD\.models:1\b", r"data file not found in package '//': models", TINY % 'data = ["models"]'),
    # calibration
    Case("calibration", "calibration_escapes", 2, r"BUILD\.models:2\b", r"calibration file '\.\./c\.npz' \(resolving to .*/c\.npz\) is outside the package '//'",
         GOOD + STATIC % 'calibration(file = "../c.npz")'),
    Case("calibration", "calibration_missing", 2, r"BUILD\.models:2\b", r"calibration file not found in package '//': c\.npz",
         GOOD + STATIC % 'calibration(file = "c.npz")'),
    Case("calibration", "calibration_not_npz", 2, r"BUILD\.models:2\b", r"calibration\.file must be a \.npz or \.safetensors file",
         GOOD + STATIC % 'calibration(file = "c.csv")'),
    Case("calibration", "calibration_for_dynamic_scheme", 2, r"BUILD\.models:2\b", r"calibration applies only to scheme 'pt2e_int8_static'",
         GOOD + 'pt2_program(name = "p", model = ":m", quantize = quantization("pt2e_int8_dynamic", calibration = calibration(samples = 2)))\n'),
    # paths
    Case("paths", "glob_up", 2, r"BUILD\.models:1\b", r"glob\(\) patterns are package-relative paths, got '\.\./\*'", 'x = glob(["../*"])\n'),
    Case("paths", "load_missing_file", 2, r"BUILD\.models:1:1", r"load\(\): no file nope\.star for label '//:nope\.star'", 'load("//:nope.star", "x")\n'),
    Case("paths", "load_not_star", 2, r"BUILD\.models:1:1", r"load\(\) takes a \.star file label", 'load("//:defs.bzl", "x")\n'),
    Case("paths", "load_absolute_path", 2, r"BUILD\.models:1:1", r"invalid label '/etc/passwd'", 'load("/etc/passwd", "x")\n'),
    # symlinks
    Case("symlinks", "build_file_links_outside", 2, r"BUILD\.models\b", r"BUILD\.models is a symlink to .*/outside/pkg/BUILD\.models, outside the workspace",
         Link(f"{OUTSIDE}/pkg/BUILD.models")),
    Case("symlinks", "star_links_outside", 2, r"BUILD\.models:1:1", r"defs\.star is a symlink to .*/outside/defs\.star, outside the workspace",
         'load("//:defs.star", "X")\n', {"defs.star": Link(f"{OUTSIDE}/defs.star")}),
    Case("symlinks", "data_links_outside", 2, r"BUILD\.models:1\b", r"data file 'secret\.txt' \(resolving to .*/outside/secret\.txt\) is outside the package '//'",
         TINY % 'data = ["secret.txt"]', {"secret.txt": Link(f"{OUTSIDE}/secret.txt")}),
    Case("symlinks", "data_links_into_another_package", 2, r"BUILD\.models:1\b", r"data file 'd\.bin' \(resolving to .*/ws/sub/d\.bin\) is in the package '//sub', not '//'",
         TINY % 'data = ["d.bin"]', {"d.bin": Link("sub/d.bin"), "sub/d.bin": "x", "sub/BUILD.models": ""}),
    Case("symlinks", "weights_link_outside", 2, r"BUILD\.models:1\b", r"weights file 'w\.safetensors' \(resolving to .*/outside/w\.safetensors\) is outside the package '//'",
         TINY % 'weights = "w.safetensors"', {"w.safetensors": Link(f"{OUTSIDE}/w.safetensors")}),
    Case("symlinks", "calibration_links_outside", 2, r"BUILD\.models:2\b", r"calibration file 'c\.npz' \(resolving to .*/outside/c\.npz\) is outside the package '//'",
         GOOD + STATIC % 'calibration(file = "c.npz")', {"c.npz": Link(f"{OUTSIDE}/c.npz")}),
    Case("symlinks", "package_dir_linked", 2, r"alias/BUILD\.models\b", r"this package is under alias/, a symlink to .*/ws/real; a package must be a real directory",
         files={"real/BUILD.models": GOOD, "alias": Link("real")}),
    Case("symlinks", "package_dir_linked_outside", 2, r"ext/BUILD\.models\b", r"this package is under ext/, a symlink to .*/outside/pkg",
         files={"ext": Link(f"{OUTSIDE}/pkg")}),
    Case("symlinks", "build_file_link_dangling", 2, r"BUILD\.models\b", r"BUILD\.models cannot be read: No such file or directory", Link("gone.models")),
    # encodings
    Case("encodings", "build_file_latin1", 2, r"BUILD\.models:1\b", r"not UTF-8 text: byte 0xe9 at offset 5", b"# caf\xe9\n" + GOOD.encode()),
    Case("encodings", "build_file_bad_byte_on_line_2", 2, r"BUILD\.models:2\b", r"not UTF-8 text: byte 0xff at offset %d" % (len(GOOD) + 2),
         GOOD.encode() + b"# \xff\n"),
    Case("encodings", "star_file_utf16", 2, r"defs\.star:1\b", r"not UTF-8 text: byte 0xff at offset 0",
         'load("//:defs.star", "X")\n', {"defs.star": "X = 1\n".encode("utf-16")}),
    # Starlark bounds
    Case("bounds", "endless_loop", 2, r"BUILD\.models:4\b", r"evaluation stopped after 100,000,000 loop iterations", LOOP + "spin()\n"),
    Case("bounds", "endless_loop_in_macro", 2, r"BUILD\.models:2\b", r"evaluation stopped after 100,000,000 loop iterations",
         'load("//:defs.star", "spin")\nspin()\n', {"defs.star": LOOP}),
    Case("bounds", "deep_value_printed", 2, r"BUILD\.models\b", r"the Starlark interpreter crashed \(signal SIGSEGV\).*nested too deeply", NESTED % "str(x)"),
    Case("bounds", "deep_value_printed_in_query", 2, r"BUILD\.models\b", r"the Starlark interpreter crashed \(signal SIGSEGV\)",
         NESTED % "str(x)", args=("query", "//...")),
    Case("bounds", "deep_value_given_to_a_rule", 2, r"BUILD\.models:6\b", r"Maximum depth of 1000 exceeded while converting",
         (NESTED % "x").replace("return x", 'model(name = "m", entry = "a:b", inputs = x)')),
    Case("bounds", "endless_recursion", 2, r"BUILD\.models:3\b", r"Starlark call stack overflow", "def f(n):\n    return f(n + 1)\nf(0)\n"),
    Case("bounds", "huge_string", 2, r"BUILD\.models\b", r"crashed .*ran out of memory \(the limit is 2 GiB\)", 'x = "ab" * 2000000000\n'),
    # environment
    Case("environment", "no_workspace", 2, r"no WORKSPACE\.models found in .*/ws\b", r"the workspace root is the directory holding",
         files={"WORKSPACE.models": None}),
    Case("environment", "out_is_a_file", 2, r"/ws/out\b", r"(is a file|is in the way).*(move|Move)", files={"out": "not a directory\n"}),
    Case("environment", "cache_is_a_file", 2, r"/ws/cache-file\b", r"is in the way", files={"cache-file": "x"},
         env={"MODELBUILD_CACHE_DIR": "{workspace}/cache-file"}),
    # language models: what depends on the model is read by its first action (llm_inspect), which every
    # other action of the program waits for; the failure names the declaration's file:line
    Case("language models", "llm_not_a_causal_lm", 1, r"BUILD\.models:2\b", r"returned BertModel, which is not a causal LM",
         LM % "encoder" + LLM % "max_seq_len = 24", {"tok.json": word_tokenizer(5)}),
    Case("language models", "llm_tokenizer_beyond_vocab", 1, r"BUILD\.models:2\b",
         r"ids up to 100, beyond the model's embedding table of 64 rows.*'big' = 100",
         LM % "tiny_lm" + LLM % "max_seq_len = 24", {"tok.json": word_tokenizer(100)}),
    Case("language models", "llm_max_seq_len_above_limit", 1, r"BUILD\.models:2\b",
         r"max_seq_len = 64 is above the model's position limit.*max_position_embeddings = 32",
         LM % "tiny_lm" + LLM % "max_seq_len = 64", {"tok.json": word_tokenizer(5)}),
    Case("language models", "llm_quantize_without_xnnpack", 2, r"BUILD\.models:2\b",
         r"quantize 'torchao_int8_dynact_int4w' needs backends = \[\"xnnpack\"\]",
         LM % "tiny_lm" + LLM % 'quantize = "torchao_int8_dynact_int4w"', {"tok.json": word_tokenizer(5)}),
    Case("language models", "llm_static_scheme", 2, r"BUILD\.models:2\b",
         r"quantize 'pt2e_int8_static' does not apply to a language model; use one of .*pt2e_int8_dynamic_int4w",
         LM % "tiny_lm" + LLM % 'quantize = "pt2e_int8_static", backends = ["xnnpack"]', {"tok.json": word_tokenizer(5)}),
    Case("language models", "seq2seq_pt2e_scheme", 2, r"BUILD\.models:2\b",
         r"quantize 'pt2e_int8_dynamic' does not apply to seq2seq_program; use one of torchao_int8_dynact_int4w",
         LM % "tiny_lm" + 'seq2seq_program(name = "s", model = ":lm", tokenizer = "tok.json", quantize = "pt2e_int8_dynamic", '
         'backends = ["xnnpack"])\n', {"tok.json": word_tokenizer(5)}),
    Case("language models", "llm_pt2e_per_tensor", 2, r"BUILD\.models:2\b",
         r"takes per-channel weight scales on a language model \(per_channel = True\)",
         LM % "tiny_lm" + LLM % 'quantize = quantization("pt2e_int8_dynamic", per_channel = False), backends = ["xnnpack"]',
         {"tok.json": word_tokenizer(5)}),
    Case("language models", "llm_missing_tokenizer", 2, r"BUILD\.models:2\b", r"tokenizer.*tok\.json",
         LM % "tiny_lm" + LLM % "max_seq_len = 24"),
    Case("language models", "token_agreement_outside_llm", 2, r"BUILD\.models:2\b",
         r"min_token_agreement applies to language models.*llm_program, seq2seq_program",
         GOOD + 'pt2_program(name = "p", model = ":m", tolerance = tolerance(min_token_agreement = 0.9))\n'),
    Case("language models", "llm_prompt_not_token_ids", 2, r"BUILD\.models:2\b", r"must declare one input, input_ids",
         'model(name = "lm", entry = "models.lm:tiny_lm", inputs = {"x": tensor([1, 4])})\n' + LLM % "max_seq_len = 24",
         {"tok.json": word_tokenizer(5)}),
]

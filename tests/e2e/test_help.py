"""`modelbuild help`: what BUILD.models may call, generated from the rule set's Pydantic models, and
the README's table of artifact kinds checked against it (so neither can drift)."""
from __future__ import annotations

import re
from pathlib import Path

from helpers import REPO, run_cli

from rules import RULESET


def help_text(tmp_path: Path, *name: str) -> str:
    proc = run_cli(tmp_path, "help", *name)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_help_lists_every_rule_value_and_builtin(tmp_path: Path):
    text = help_text(tmp_path)
    for name in [*RULESET.kinds, *RULESET.helpers]:
        assert re.search(rf"^  {name}(\(\.\.\.\))?: \S", text, re.M), (name, text)
    for builtin in ("load", "glob", "package", "package_name"):
        assert re.search(rf"^  {builtin}\(", text, re.M), text


def test_help_of_a_rule_gives_every_field_with_its_type_default_and_doc(tmp_path: Path):
    text = help_text(tmp_path, "executorch_program")
    decl = RULESET.kinds["executorch_program"].decl
    fields = re.findall(r"^  (\w+): ", text, re.M)
    assert fields == list(decl.model_fields), text
    assert re.search(r'^  verify_cases: \["example" \| "min" \| "max", \.\.\.\] \| None  \(default None\)  numeric cases',
                     text, re.M), text
    assert re.search(r"^  backends: \[xnnpack\(\.\.\.\) \| coreml\(\.\.\.\) \| mps\(\.\.\.\) \| vulkan\(\.\.\.\), \.\.\.\]  "
                     r"\(default \[\]\)  in priority order", text, re.M), text
    assert re.search(r"^  model: string  \(required\)  label of a model\(\) target", text, re.M), text
    tensor = help_text(tmp_path, "tensor")
    assert '  dtype: "float32" | "float16" | "bfloat16" | "int64" | "int32" | "int8" | "uint8" | "bool"  (default "float32")' in tensor
    proc = run_cli(tmp_path, "help", "excutorch_program")
    assert proc.returncode == 2 and "did you mean 'executorch_program'?" in proc.stderr, proc.stderr


def test_the_readme_table_of_artifact_kinds_matches_the_rules(tmp_path: Path):
    readme = (REPO / "README.md").read_text()
    table = readme.split("### Artifact kinds and their options", 1)[1].split("\n\n", 2)[1]
    rows = [line.split("|")[1:4] for line in table.splitlines()[2:]]
    kinds = {re.search(r"`(\w+)`", rule).group(1): options for rule, _, options in rows}
    artifact_kinds = {k for k in RULESET.kinds if k not in ("model", "release")}
    assert set(kinds) == artifact_kinds
    for kind, options in kinds.items():
        named = set(re.findall(r"`([a-z_][a-z0-9_]*)(?: =[^`]*)?`", options))  # `opset`, `decompose = "core_aten"`
        text = help_text(tmp_path, kind)
        for option in named:
            assert option in RULESET.kinds[kind].decl.model_fields, (kind, option)
            assert re.search(rf"^  {option}: ", text, re.M), (kind, option)

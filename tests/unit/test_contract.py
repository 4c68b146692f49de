"""The engine-rules contract, checked on the source: the engine's modules import each other without a
cycle, no engine module imports `rules` or the toolchain (anywhere, even inside a function), and
`rules/` reaches the engine only through `buildsys.rule_api`; and the tests sit in tiers by what they
need, the unit tier needing neither the toolchain nor the CLI."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
from helpers import REPO

TOOLCHAIN = {"torch", "executorch", "coremltools", "torchao", "numpy", "onnx", "onnxruntime", "onnxscript"}


def module_name(path: Path) -> str:
    """buildsys/cache/stat.py -> buildsys.cache.stat; a package's __init__.py -> the package."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module the file imports, anywhere in it, as absolute dotted names."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}  # `from . import scratch` names a module
    return found


def sources(package: str) -> dict[str, Path]:
    """Every module of a package, its sub-packages' included, by dotted name."""
    return {module_name(p): p for p in sorted((REPO / package).rglob("*.py"))}


def engine_graph() -> nx.DiGraph:
    modules = sources("buildsys")
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        for imported in imports(path):
            if imported in modules and imported != name and not name.startswith(imported + "."):
                graph.add_edge(name, imported)
    return graph


def test_engine_modules_import_each_other_without_a_cycle():
    graph = engine_graph()
    assert len(graph) > 20
    assert list(nx.simple_cycles(graph)) == []


def test_no_engine_module_imports_rules_or_the_toolchain():
    offenders = {}
    for name, path in sources("buildsys").items():
        bad = {m for m in imports(path) if m.split(".")[0] in TOOLCHAIN | {"rules"}}
        if bad:
            offenders[name] = sorted(bad)
    assert offenders == {}


def test_rules_reach_the_engine_only_through_the_rule_api():
    offenders = {}
    for name, path in sources("rules").items():
        engine = {m for m in imports(path) if m.split(".")[0] == "buildsys"}
        allowed = {"buildsys", "buildsys.rule_api"} | {f"buildsys.rule_api.{n}" for n in _api_names()}
        if engine - allowed:
            offenders[name] = sorted(engine - allowed)
    assert offenders == {}


def _api_names() -> set[str]:
    from buildsys import rule_api

    return set(rule_api.__all__)


def test_the_rule_api_exports_what_it_names():
    from buildsys import rule_api

    assert all(hasattr(rule_api, n) for n in rule_api.__all__)


TESTS = REPO / "tests"
TIERS = ("unit", "steps", "e2e", "cluster")


def test_every_test_file_sits_in_one_tier_folder():
    misplaced = [p.relative_to(TESTS).as_posix() for p in TESTS.rglob("test_*.py")
                 if len(p.relative_to(TESTS).parts) != 2 or p.relative_to(TESTS).parts[0] not in TIERS]
    assert misplaced == []
    assert {p.name for p in TESTS.glob("*.py")} == {"conftest.py"}, "support modules live in tests/support"


def test_the_unit_tier_needs_neither_the_toolchain_nor_the_cli():
    """Nothing under tests/unit imports torch and the like, or runs the CLI (helpers.run_cli and build,
    a subprocess of `modelbuild`): that is what keeps `pytest -m unit` within seconds."""
    offenders = {}
    for path in sorted((TESTS / "unit").rglob("*.py")):
        tree = ast.parse(path.read_text())
        bad = {m for m in imports(path) if m.split(".")[0] in TOOLCHAIN}  # `rules` itself loads none of it
        bad |= {f"helpers.{a.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "helpers"
                for a in node.names if a.name in ("run_cli", "build")}
        bad |= {"-m modelbuild" for node in ast.walk(tree) if isinstance(node, (ast.List, ast.Tuple))
                for a, b in zip(node.elts, node.elts[1:]) if getattr(a, "value", None) == "-m" and getattr(b, "value", None) == "modelbuild"}
        bad |= {m for m in imports(path) if m.startswith(("buildsys.cli", "modelbuild"))}
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}
    assert len(list((TESTS / "unit").glob("test_*.py"))) >= 4


def test_the_rule_api_is_a_leaf():
    """Importing the contract (as every worker and Ray actor does to read a request) loads neither
    the Starlark evaluator, nor the graph library, nor the planner."""
    import subprocess
    import sys

    code = "import sys, buildsys.rule_api; print(sorted({'starlark', 'networkx', 'buildsys.planning'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    inside = [m for p in (REPO / "buildsys" / "rule_api").glob("*.py") for m in imports(p)
              if m.startswith("buildsys.") and not m.startswith(("buildsys.rule_api", "buildsys.errors", "buildsys.labels",
                                                                 "buildsys.digests", "buildsys.toolchain", "buildsys.units"))]
    assert inside == [], "the contract imports only the shared vocabulary"


def test_every_name_the_rule_api_exports_is_used_by_the_rules_or_its_context():
    from buildsys import rule_api

    used = {a.name for p in (REPO / "rules").rglob("*.py") for node in ast.walk(ast.parse(p.read_text()))
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("buildsys") for a in node.names}
    context = (REPO / "buildsys" / "rule_api" / "plan.py").read_text().split("class PlanContext(Protocol):")[1]
    assert [n for n in rule_api.__all__ if n not in used and f"-> {n}" not in context and f": {n}" not in context] == []


def test_the_engine_names_no_rule_set():
    """The engine knows no default plugin: the rule set's modules come from the rule set itself."""
    found = [f"{name}: {node.value!r}" for name, path in sources("buildsys").items()
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and (node.value == "rules" or node.value.startswith("rules."))]
    assert found == []


def test_only_the_layout_module_names_the_cache_subfolders():
    """cache/layout.py owns the cache directory's layout: no other engine module joins a subfolder's name."""
    names = {"ac", "cas", "stat", "scan", "tmp", "locks", "logs", "outputs", "stamps"}
    found = [f"{name}:{node.lineno}" for name, path in sources("buildsys").items() if name != "buildsys.cache.layout"
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
             and isinstance(node.right, ast.Constant) and node.right.value in names]
    assert found == []


# The engine's layers, lowest first: a module imports only from its own layer or those below it.
LAYERS = [
    {"buildsys", "buildsys.errors", "buildsys.labels", "buildsys.units", "buildsys.toolchain", "buildsys.digests"},
    "buildsys.rule_api", "buildsys.load", "buildsys.cache", "buildsys.planning", "buildsys.exec", "buildsys.out_tree",
    {"buildsys.build", "buildsys.events"}, "buildsys.cli",
]


def layer_of(module: str) -> int:
    for n, layer in enumerate(LAYERS):
        names = layer if isinstance(layer, set) else {layer}
        if module in names or any(module.startswith(name + ".") for name in names - {"buildsys"}):
            return n
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def test_the_engine_imports_only_downward_through_its_layers():
    """vocabulary < rule_api < load < cache < planning < exec < out_tree < build < cli, as Bazel's
    lib/{packages,analysis,actions,remote,exec}: nothing reaches back up."""
    upward = [f"{a} -> {b}" for a, b in engine_graph().edges if layer_of(b) > layer_of(a)]
    assert upward == []
    top = sorted(p.name for p in (REPO / "buildsys").glob("*.py"))
    assert len(top) <= 10, top


RULE_TOOLCHAIN = TOOLCHAIN | {"safetensors", "transformers"}


def test_the_rules_are_split_by_when_their_code_runs():
    """targets/ plan in the engine's process (never the toolchain, even inside a function); steps/ hold
    one module per step kind; steps, lib, coreml and release never reach back into targets; only
    coreml/ and the Core ML steps import coremltools."""
    from rules import RULESET

    rules = sources("rules")
    steps = {".".join(p.relative_to(REPO).with_suffix("").parts) for p in (REPO / "rules" / "steps").rglob("*.py")
             if p.stem != "__init__"}  # rules/steps/llm/export.py: the step rules.steps.llm.export
    assert {s.module for s in RULESET.steps.values()} == steps
    in_targets = {n: sorted(m for m in imports(p) if m.split(".")[0] in RULE_TOOLCHAIN)
                  for n, p in rules.items() if n.startswith("rules.targets")}
    assert {n: bad for n, bad in in_targets.items() if bad} == {}
    back = {n for n, p in rules.items() if n.startswith(("rules.steps", "rules.lib", "rules.coreml", "rules.release"))
            and any(m.startswith("rules.targets") for m in imports(p))}
    assert back == set()
    coreml = {n for n, p in rules.items() if any(m.split(".")[0] == "coremltools" for m in imports(p))}
    assert {n for n in coreml if not n.startswith(("rules.coreml.", "rules.steps.coreml_"))} == set()
    top = sorted(p.name for p in (REPO / "rules").glob("*.py"))
    assert len(top) <= 10, top


def test_one_error_vocabulary():
    """The target prefix `kind() 'name':` and the `--flag value:` shape are each written once, in
    buildsys/errors.py; only it formats a pydantic ValidationError; steps do not restate their label."""
    import re

    engine = {n: p.read_text() for n, p in sources("buildsys").items()}
    prefix = [n for n, text in engine.items() if re.search(r"""f"\{[a-z_.]*kind\}\(\) '""", text)]
    assert prefix == ["buildsys.errors"]
    assert [n for n, text in engine.items() if 'UserError(f"--' in text] == []
    assert [n for n, text in engine.items() if ".errors()" in text] == ["buildsys.errors"]
    assert [n for n, p in sources("rules").items() if 'StepError(f"{ctx.label}' in p.read_text()] == []


def test_validation_errors_speak_of_fields_not_pydantic():
    from pydantic import ValidationError

    from buildsys.errors import FlagError, TargetError, describe_validation
    from rules.targets.artifacts import CoremlPackage

    try:
        CoremlPackage.model_validate({"name": "m", "model": ":m", "verfy_cases": [], "verify": "maybe"})
    except ValidationError as err:
        problems = describe_validation(err, CoremlPackage)
    assert any(p.startswith("got an unexpected field 'verfy_cases' (did you mean 'verify_cases'?); allowed fields: compress, ")
               for p in problems), problems
    assert "field 'verify': expected a valid boolean, unable to interpret input (got 'maybe')" in problems
    from rules.targets.artifacts import ExecutorchProgram

    try:
        ExecutorchProgram.model_validate({"name": "e", "model": ":m", "backends": ["xnpack"]})
    except ValidationError as err:  # a discriminated union's tag: pydantic says "Input tag ... found using"
        problems = describe_validation(err, ExecutorchProgram)
    assert problems == ["field 'backends[0]': 'xnpack' is not allowed (did you mean 'xnnpack'?); "
                        "allowed: xnnpack, coreml, mps, vulkan"], problems
    try:
        CoremlPackage.model_validate({"name": "m", "model": ":m", "verify_cases": ["maximum"]})
    except ValidationError as err:  # a Literal: pydantic says "Input should be 'example', 'min' or 'max'"
        problems = describe_validation(err, CoremlPackage)
    assert problems == ["field 'verify_cases[0]': 'maximum' is not allowed (did you mean 'max'?); allowed: example, min, max"]
    assert str(TargetError("model", "m", "no such file", "BUILD.models:3")) == "BUILD.models:3: model() 'm': no such file"
    assert str(FlagError("--max-size", "'5X'", "expected a size")) == "--max-size '5X': expected a size"


def test_no_function_of_the_engine_or_the_rules_is_over_60_lines():
    long = [f"{name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for package in ("buildsys", "rules") for name, path in sources(package).items()
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60]
    assert long == []


def test_the_benchmarks_do_not_import_the_tests():
    """bench/ and tests/ share testbed/ (servers, clusters, the example's copy), not each other."""
    offenders = [p.name for p in (REPO / "bench").glob("*.py")
                 if any("sys.path" in line and '"tests"' in line for line in p.read_text().splitlines())
                 or any(m.split(".")[0] in {"helpers", "fake_executor", "conftest"} for m in imports(p))]
    assert offenders == []

"""The engine-rules contract, checked on the source: the engine's modules import each other without a
cycle, no engine module imports `rules` or the toolchain (anywhere, even inside a function), and
`rules/` reaches the engine only through `buildsys.rule_api`."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

from helpers import REPO

TOOLCHAIN = {"torch", "executorch", "coremltools", "torchao", "numpy"}


def imports(path: Path, package: str) -> set[str]:
    """Every module the file imports, anywhere in it, as absolute dotted names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}  # `from . import scratch` names a module
    return found


def engine_graph() -> nx.DiGraph:
    modules = {f"buildsys.{p.stem}": p for p in (REPO / "buildsys").glob("*.py") if p.stem != "__init__"}
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        for imported in imports(path, "buildsys"):
            if imported in modules and imported != name:
                graph.add_edge(name, imported)
    return graph


def test_engine_modules_import_each_other_without_a_cycle():
    graph = engine_graph()
    assert len(graph) > 20
    assert list(nx.simple_cycles(graph)) == []


def test_no_engine_module_imports_rules_or_the_toolchain():
    offenders = {}
    for path in (REPO / "buildsys").glob("*.py"):
        bad = {m for m in imports(path, "buildsys") if m.split(".")[0] in TOOLCHAIN | {"rules"}}
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}


def test_rules_reach_the_engine_only_through_the_rule_api():
    offenders = {}
    for path in (REPO / "rules").glob("*.py"):
        engine = {m for m in imports(path, "rules") if m.split(".")[0] == "buildsys"}
        allowed = {"buildsys", "buildsys.rule_api"} | {f"buildsys.rule_api.{n}" for n in _api_names()}
        if engine - allowed:
            offenders[path.name] = sorted(engine - allowed)
    assert offenders == {}


def _api_names() -> set[str]:
    from buildsys import rule_api

    return set(rule_api.__all__)


def test_the_rule_api_exports_what_it_names():
    from buildsys import rule_api

    assert all(hasattr(rule_api, n) for n in rule_api.__all__)

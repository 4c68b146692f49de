"""The target graph: validated targets and their dependencies (networkx DiGraph).

Packages are loaded lazily: those a pattern covers, then those their dependencies live in.
An edge a -> b means target a depends on target b.
"""
from __future__ import annotations

from dataclasses import replace

import networkx as nx

from ..errors import Location, TargetError, UserError, did_you_mean
from ..labels import Label, Pattern
from ..rule_api import RuleSet, Target
from . import visibility
from .declarations import validate
from .loader import Loader
from .workspace import Workspace


def _listed(names: list[str], most: int = 8) -> str:
    shown = ", ".join(sorted(names)[:most])
    return (shown + (f" and {len(names) - most} more" if len(names) > most else "")) if names else "no targets"


class TargetGraph:
    def __init__(self, workspace: Workspace, ruleset: RuleSet):
        self.workspace = workspace
        self.ruleset = ruleset
        self.loader = Loader(workspace, ruleset)
        self.graph = nx.DiGraph()
        self.targets: dict[Label, Target] = {}
        self._packages: dict[str, list[Target]] = {}
        self._all_packages: list[str] | None = None

    def all_packages(self) -> list[str]:
        if self._all_packages is None:
            self._all_packages = self.workspace.packages()
        return self._all_packages

    def package(self, package: str) -> list[Target]:
        if package not in self._packages:
            targets: list[Target] = []
            seen: dict[str, Location] = {}
            for raw in self.loader.load_package(package):
                decl = validate(raw, self.ruleset)
                if decl.name in seen:
                    raise UserError(
                        f"duplicate target name '{decl.name}' (first declared at {seen[decl.name]})", raw.location
                    )
                seen[decl.name] = raw.location
                label = Label(package, decl.name)
                try:
                    deps = tuple(Label.parse(d, package) for d in decl.dep_labels())
                except UserError as err:
                    raise TargetError(raw.kind, decl.name, err.message, raw.location) from None
                targets.append(Target(label, raw.kind, decl, raw.location, deps))
            self._packages[package] = targets
        return self._packages[package]

    def expand(self, patterns: list[str]) -> list[Label]:
        """The labels the patterns name, loading their packages and every dependency."""
        wanted = [t.label for text in patterns for t in self._matching(text)]
        self._close_over(wanted)
        return sorted(set(wanted))

    def _matching(self, text: str) -> list[Target]:
        """The targets one pattern names, loading the packages it covers."""
        pattern = Pattern.parse(text)
        if pattern.recursive:
            packages = [p for p in self.all_packages() if pattern.covers_package(p)]
            if not packages:
                raise UserError(f"pattern '{text}' matches no package (no BUILD.models beneath it)")
        else:
            if pattern.package not in self.all_packages():
                raise UserError(f"no package '//{pattern.package}' (no BUILD.models in that directory)")
            packages = [pattern.package]
        matched = [t for p in packages for t in self.package(p) if pattern.matches(t.label)]
        if pattern.name is not None and not matched:
            names = [t.label.name for t in self.package(pattern.package)]
            hint = did_you_mean(pattern.name, names) or f"; it has {_listed(names)}"
            if ":" not in text:  # //pkg means //pkg:pkg, as in Bazel; they may have meant the package
                hint += (f". To name every target of the package, write //{pattern.package}:all, or "
                         f"//{pattern.package}/... for it and the packages beneath")
            raise UserError(f"no target '{pattern.name}' in package '//{pattern.package}'{hint}")
        return matched

    def _pattern_deps(self, target: Target) -> Target:
        """The target with the targets its dep patterns name added to its deps."""
        found: set[Label] = set()
        for text in target.decl.dep_patterns():
            text = text if text.startswith("//") else f"//{target.label.package}{text}"  # ":all"
            try:
                matched = self._matching(text)
            except UserError as err:
                raise TargetError(target.kind, target.label.name, err.message, target.location) from None
            found |= {t.label for t in matched if t.label != target.label and target.decl.selects(t.kind)}
        if not found:
            return target
        return replace(target, deps=tuple(sorted(set(target.deps) | found)))

    def _close_over(self, labels: list[Label]) -> None:
        pending = list(labels)
        while pending:
            label = pending.pop()
            if label in self.targets:
                continue
            target = self._pattern_deps(next(t for t in self.package(label.package) if t.label == label))
            self.targets[label] = target
            self.graph.add_node(label)
            for dep in target.deps:
                if dep.package not in self.all_packages():
                    raise UserError(
                        f"'{label}' depends on '{dep}', but there is no package '//{dep.package}'", target.location
                    )
                found = {t.label.name: t for t in self.package(dep.package)}
                if dep.name not in found:
                    raise UserError(
                        f"'{label}' depends on '{dep}', which does not exist{did_you_mean(dep.name, list(found))}",
                        target.location,
                    )
                granted = found[dep.name].decl.visibility
                if not visibility.allows(granted, dep.package, label.package):
                    refused = visibility.refusal(label, dep, granted, found[dep.name].location)
                    raise UserError(refused.message, target.location)
                self.graph.add_edge(label, dep)
                pending.append(dep)
        try:
            cycle = nx.find_cycle(self.graph)
        except nx.NetworkXNoCycle:
            return
        path = " -> ".join(str(a) for a, _ in cycle) + f" -> {cycle[0][0]}"
        raise UserError(f"dependency cycle: {path}", self.targets[cycle[0][0]].location)

    def in_dependency_order(self, labels: list[Label]) -> list[Label]:
        """Labels and their transitive deps, dependencies first."""
        needed = set(labels)
        for label in labels:
            needed |= nx.descendants(self.graph, label)
        return list(nx.lexicographical_topological_sort(self.graph.subgraph(needed).reverse(), key=str))

    def deps(self, label: Label) -> list[Label]:
        return sorted(nx.descendants(self.graph, label))

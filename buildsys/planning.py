"""From targets to the action graph: each target kind's plan() declares its steps.

Each action is named by its id (cache/keys.py): identical steps of different targets get the same
id and become one node. Its cache key is computed later, by the scheduler, from the *content*
digests of its inputs: an unchanged output stops a rebuild early.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import networkx as nx
from pydantic import BaseModel, ValidationError

from .cache import keys
from .cache.stat import FileDigests, ImportScan
from .digests import digest_json
from .errors import TargetError, UserError, describe_validation, did_you_mean
from .labels import Label
from .load.pysources import UNKNOWN, defined_names, imported_names, module_file, python_closure
from .load.revision import workspace_revision
from .load.target_graph import TargetGraph
from .load.workspace import BUILD_FILE
from .rule_api import Action, Output, PlanContext, Planned, RuleSet, Sources, Target


def _owning_dir(path: Path, package: Path) -> Path | None:
    """The package directory `path` belongs to, `package` or a subpackage's; None if outside `package`."""
    if not path.is_relative_to(package):
        return None
    for parent in path.parents:
        if parent == package or not parent.is_relative_to(package):
            return package
        if (parent / BUILD_FILE).is_file():
            return parent
    return package


class PlanningContext(PlanContext):
    """The view of the build a target kind's plan() gets (rule_api.PlanContext, implemented)."""

    def __init__(self, planner: "Planner", target: Target):
        self._planner = planner
        self.target = target
        self.label = target.label

    def error(self, message: str) -> UserError:
        return TargetError(self.target.kind, self.label.name, message, self.target.location)

    def python_module(self, module: str) -> Sources:
        """The module's file and every first-party module it imports, from the workspace root."""
        root = self._planner.workspace_root
        if module_file(root, module) is None:
            rel = module.replace(".", "/")
            raise self.error(f"entry module '{module}' not found: no {rel}.py or {rel}/__init__.py in the workspace")
        return self._planner.sources(self._planner.closure(module), code=True)

    def python_names(self, module: str) -> frozenset[str] | None:
        """The names a workspace module defines at its top level, read without running it; None
        when that cannot be known so (a star import, a module __getattr__)."""
        path = module_file(self._planner.workspace_root, module)
        names = self._planner.defined(path, module) if path is not None else frozenset({UNKNOWN})
        return None if UNKNOWN in names else names

    def package_dir(self) -> Path:
        return self._planner.workspace_root / self.label.package

    def files(self, paths: list[str], what: str = "file") -> Sources:
        """Package-relative files (weights, data, calibration): each must resolve, symlinks followed,
        to a file inside the package's directory."""
        base = self.package_dir()
        package = f"'//{self.label.package}'"
        for p in paths:
            real = (base / p).resolve()
            owner = _owning_dir(real, base.resolve())
            if Path(p).is_absolute() or owner != base.resolve():
                shown = "" if real == base.resolve() / p else f" (resolving to {real})"  # a link, or ..
                where = (f"is in the package '//{self.label.package + '/' if self.label.package else ''}"
                         f"{owner.relative_to(base.resolve()).as_posix()}', not {package}" if owner else
                         f"is outside the package {package}")
                raise self.error(f"{what} '{p}'{shown} {where}; weights, data and calibration files must be "
                                 f"inside the package's directory: copy the file there (a symlink is followed, "
                                 f"and must point inside the package too)")
        missing = [p for p in paths if not (base / p).is_file()]
        if missing:
            raise self.error(f"{what} not found in package {package}: {', '.join(missing)}")
        return self._planner.sources([base / p for p in paths])

    def setting(self, name: str) -> object | None:
        """A build-wide setting given on the command line (e.g. a signing key), or None."""
        return self._planner.settings.get(name)

    def revision(self) -> dict:
        """The workspace's version-control state: {"vcs": "git", "commit", "dirty"} or {"vcs": None}."""
        return self._planner.revision()

    def external_file(self, path: Path) -> Sources:
        """A file the build was pointed at from outside the workspace (a key given on the command line)."""
        return self._planner.sources([path])

    def dep(self, text: str) -> tuple[Target, Planned]:
        label = Label.parse(text, self.label.package)
        return self._planner.targets.targets[label], self._planner.planned[label]

    def action(self, step: str, config: BaseModel, inputs: dict[str, Sources | Output], outputs: list[str],
               subject: str | None = None) -> Action:
        kind = self._planner.ruleset.steps.get(step)
        if kind is None:
            known = sorted(self._planner.ruleset.steps)
            raise self.error(f"its rule asks for a step '{step}'{did_you_mean(step, known)}, which the rule set does "
                             f"not have; its steps are: {', '.join(known)}")
        if not isinstance(config, kind.config):
            raise self.error(f"its rule gives the step '{step}' a {type(config).__name__}; that step takes a "
                             f"{kind.config.__name__}")
        action = self._planner.add_action(self.label, step, config.model_dump(mode="json"), inputs, tuple(outputs))
        if subject is not None and action.subject is None:
            action.subject = Label.parse(subject, self.label.package)
        if action.where is None:
            action.where = str(self.target.location) if self.target.location else None
        return action


class Planner:
    def __init__(self, targets: TargetGraph, ruleset: RuleSet, digests: FileDigests, settings: dict | None = None,
                 scan: ImportScan | None = None):
        self.targets = targets
        # Python files' imports, remembered across builds when the cache has an import scan store.
        self.scan = (lambda path, module: scan.names(path, module, imported_names)) if scan else imported_names
        # And the names they define, remembered the same way (under a key of their own).
        self.defined = (lambda path, module: scan.names(path, f"{module}#defined", defined_names)) if scan else defined_names
        self.settings = dict(settings or {})
        self.ruleset = ruleset
        self.digests = digests
        self.workspace_root = targets.workspace.root
        self.graph = nx.DiGraph()  # action id -> action id it feeds
        self.actions: dict[str, Action] = {}
        self.planned: dict[Label, Planned] = {}
        self._rule_digests: dict[str, str] = {}
        self._closures: dict[str, list[Path]] = {}
        self._revision: dict | None = None

    def revision(self) -> dict:
        if self._revision is None:
            self._revision = workspace_revision(self.workspace_root)
        return self._revision

    def closure(self, module: str) -> list[Path]:
        """A workspace module's files and those it imports, once per build (models share modules)."""
        if module not in self._closures:
            self._closures[module] = python_closure(self.workspace_root, module, scan=self.scan)
        return self._closures[module]

    def sources(self, paths: list[Path], code: bool = False) -> Sources:
        """code=True: the files are Python modules, keyed by their code (FileDigests.code_digest)."""
        root = self.workspace_root
        # Paths as the workspace names them (a Python module's symlink may point outside it; its target is hashed).
        names = [(Path(os.path.relpath(p, root)).as_posix(), p) for p in paths]
        return Sources(tuple(sorted((name, self.digests.digest(p)) for name, p in names)),
                       tuple(sorted((name, self.digests.code_digest(p)) for name, p in names)) if code else ())

    def rule_digest(self, step: str) -> str:
        """Digest of the step module's source and the rule code it imports."""
        if step not in self._rule_digests:
            module = self.ruleset.steps[step].module
            spec = importlib.util.find_spec(module.split(".")[0])
            assert spec is not None and spec.submodule_search_locations, module
            root = Path(next(iter(spec.submodule_search_locations))).parent
            files = python_closure(root, module, set(self.ruleset.rule_roots), packages=False, scan=self.scan)
            self._rule_digests[step] = digest_json(
                [[p.relative_to(root.resolve()).as_posix(), self.digests.digest(p)] for p in files]
            )
        return self._rule_digests[step]

    def add_action(self, owner: Label, step: str, config: dict, inputs: dict[str, Sources | Output],
                   outputs: tuple[str, ...]) -> Action:
        rule = self.rule_digest(step)
        action_id = keys.action_id(step, rule, config, inputs, outputs)
        action = self.actions.get(action_id)
        if action is None:
            action = Action(action_id, step, config, dict(inputs), outputs, rule)
            self.actions[action_id] = action
            self.graph.add_node(action_id)
            for value in inputs.values():
                if isinstance(value, Output):
                    self.graph.add_edge(value.action, action_id)
        action.owners.add(owner)
        return action

    def plan(self, labels: list[Label]) -> None:
        for label in self.targets.in_dependency_order(labels):
            if label in self.planned:
                continue
            target = self.targets.targets[label]
            kind = self.ruleset.kinds[target.kind]
            try:
                self.planned[label] = kind.plan(target.decl, PlanningContext(self, target))
            except ValidationError as err:  # a step config the declaration's options do not fit
                raise TargetError(target.kind, label.name, "; ".join(describe_validation(err, target.decl.__class__)),
                                  target.location) from None

    def actions_for(self, labels: list[Label]) -> list[str]:
        """Ids of the actions these targets' artifacts need, in a dependency order."""
        roots = set().union(*(self.planned[l].required_actions() for l in labels))
        needed = set(roots)
        for r in roots:
            needed |= nx.ancestors(self.graph, r)
        return list(nx.lexicographical_topological_sort(self.graph.subgraph(needed)))

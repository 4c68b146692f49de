"""Which targets a change touches, for a CI job that builds only those: `query --rdeps FILE_OR_LABEL...`
and `query --affected-since GIT_REV`. Nothing is built and no toolchain is imported.

A target's inputs are read from the plan of the whole workspace, through the same import scan that
keys the build: every file any of its actions reads (a model's Python modules, weights, data, a
calibration file), as well as its BUILD.models and the .star files that file loads. A target is
affected when one of them changed or its declaration did, and so is every target that depends on
an affected one.

For --affected-since, the changed files are git's: those that differ between the revision and the
working tree (committed or not), and new untracked ones. Declarations are compared with the
revision's own: its BUILD.models and .star files are evaluated from a copy of that revision.
"""
from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import networkx as nx

from ..errors import FlagError, UserError
from ..labels import Label
from ..load.target_graph import TargetGraph
from ..load.workspace import BUILD_FILE, MARKER, Workspace
from ..rule_api import RuleSet, Sources

_LOAD = re.compile(r"""\bload\(\s*["']([^"']+\.star)["']""")


class Universe:
    """Every target of the workspace, planned, and the files each one reads."""

    def __init__(self, workspace: Workspace, ruleset: RuleSet, stores):
        from ..build import load_and_plan

        self.workspace = workspace
        self.targets, labels, planner = load_and_plan(workspace, ruleset, ["//..."], stores)
        self.files: dict[Label, set[str]] = {}  # what its actions read
        self.definitions: dict[Label, set[str]] = {}  # its BUILD.models and the .star files that loads
        for label in labels:
            read: set[str] = set()
            for provider in planner.planned[label].providers:
                read |= {p for v in vars(provider).values() if isinstance(v, Sources) for p, _ in v.files}
            for aid in planner.actions_for([label]):
                read |= {p for v in planner.actions[aid].inputs.values() if isinstance(v, Sources) for p, _ in v.files}
            self.files[label] = read
            self.definitions[label] = self._definition(label.package)

    def _definition(self, package: str) -> set[str]:
        """The package's BUILD.models and every .star file it loads, transitively."""
        found: set[str] = set()
        pending = [(self.workspace.rel(self.workspace.build_file(package)), package)]
        while pending:
            path, from_package = pending.pop()
            if path in found:
                continue
            found.add(path)
            try:
                text = (self.workspace.root / path).read_text(errors="replace")
            except OSError:
                continue
            for written in _LOAD.findall(text):
                try:
                    label = Label.parse(written, from_package)
                except UserError:
                    continue
                pending.append((self.workspace.rel(self.workspace.package_dir(label.package) / label.name), label.package))
        return found

    def users(self, labels: set[Label]) -> list[Label]:
        """The labels and every target that depends on one of them."""
        graph: nx.DiGraph = self.targets.graph
        found = set(labels)
        for label in labels:
            if label in graph:
                found |= nx.ancestors(graph, label)
        return sorted(found)

    def reading(self, paths: set[str], definitions: bool = True) -> set[Label]:
        """Targets that read one of the files (or, with definitions, are declared by one)."""
        return {label for label, read in self.files.items()
                if read & paths or (definitions and self.definitions[label] & paths)}


def rdeps(universe: Universe, items: list[str], here: str) -> list[Label]:
    """Targets that read the given files or depend on the given targets (and those targets)."""
    from ..labels import absolute

    root = universe.workspace.root.resolve()
    labels, paths = set(), set()
    for item in items:
        path = (Path.cwd() / item).resolve() if not item.startswith((":", "//")) else None
        if path is not None and path.exists():
            if not path.is_relative_to(root):
                raise UserError(f"'{item}' is outside the workspace {root}")
            paths.add(path.relative_to(root).as_posix())
            continue
        label = Label.parse(absolute(item, here))
        if label not in universe.files:
            raise UserError(f"'{item}' is neither a file nor a target of the workspace (as a label: {label})")
        labels.add(label)
    return universe.users(labels | universe.reading(paths))


def _git(root: Path, rev: str, *args: str) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    except FileNotFoundError:
        raise FlagError("--affected-since", rev, "needs git, which is not installed") from None
    if proc.returncode != 0:
        said = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"git {args[0]} failed"
        raise FlagError("--affected-since", rev, said)
    return proc.stdout


def changed_files(root: Path, rev: str) -> set[str]:
    """Workspace-relative paths that differ between `rev` and the working tree, and new ones."""
    top = Path(_git(root, rev, "rev-parse", "--show-toplevel").strip())
    if subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=root,
                      capture_output=True).returncode != 0:
        raise FlagError("--affected-since", rev, "not a commit of this repository (a branch, tag, hash or HEAD~1)")
    names = _git(root, rev, "diff", "--name-only", "--no-renames", rev, "--", ".").splitlines()
    names += _git(root, rev, "ls-files", "--others", "--exclude-standard", "--full-name", "--", ".").splitlines()
    inside = root.resolve().relative_to(top.resolve())
    return {Path(n).relative_to(inside).as_posix() for n in names if Path(n).is_relative_to(inside)}


def same_code(root: Path, rev: str, path: str) -> bool:
    """A Python file whose code is the revision's, line for line: only comments or blank lines were
    edited, which the build does not count either (digests.digest_code), so nothing reading it is affected."""
    from ..digests import digest_code, digest_code_bytes

    current = root / path
    if not path.endswith(".py") or not current.is_file():
        return False
    old = subprocess.run(["git", "show", f"{rev}:./{path}"], cwd=root, capture_output=True)
    if old.returncode != 0:  # new since the revision
        return False
    code = digest_code_bytes(old.stdout)
    return code is not None and code == digest_code(current)


def _declarations_at(root: Path, rev: str, ruleset: RuleSet) -> dict[Label, dict] | None:
    """Each target's declaration at `rev` (its BUILD.models and .star files, evaluated), or None if
    the workspace did not load there."""
    top = Path(_git(root, rev, "rev-parse", "--show-toplevel").strip())
    inside = root.resolve().relative_to(top.resolve()).as_posix()
    listed = _git(top, rev, "ls-tree", "-r", "--name-only", rev, "--", inside if inside != "." else ".").splitlines()
    wanted = [n for n in listed if n.endswith((BUILD_FILE, ".star", MARKER))]
    with tempfile.TemporaryDirectory(prefix="modelbuild-rev-") as tmp:
        for name in wanted:
            data = subprocess.run(["git", "show", f"{rev}:{name}"], cwd=top, capture_output=True).stdout
            dst = Path(tmp) / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)
        old_root = Path(tmp) / inside
        if not (old_root / MARKER).is_file():
            return None
        try:
            graph = TargetGraph(Workspace(old_root), ruleset)
            labels = graph.expand(["//..."])
        except UserError:
            return None
        return {label: graph.targets[label].decl.model_dump(mode="json") for label in labels}


def affected_since(universe: Universe, ruleset: RuleSet, rev: str) -> list[Label]:
    root = universe.workspace.root
    changed = {path for path in changed_files(root, rev) if not same_code(root, rev, path)}
    touched = universe.reading(changed, definitions=False)  # declarations: compared below
    before = _declarations_at(root, rev, ruleset)
    now = {label: t.decl.model_dump(mode="json") for label, t in universe.targets.targets.items()}
    if before is None:  # the revision's BUILD files did not load: every target counts as changed
        touched |= set(now)
    else:
        touched |= {label for label, decl in now.items() if before.get(label) != decl}
    return universe.users(touched)

"""`modelbuild show //pkg:target`: what the cache holds for a target, without building it.

It reads the local cache through the same lookup a build uses (action_lookup), starting no
worker, and asks the rule set to present each step's metrics."""
from __future__ import annotations

import json

from rich.console import Console, Group
from rich.markup import escape
from rich.tree import Tree

from ..build import load_and_plan
from ..cache.action_cache import ActionResult
from ..cache.lookup import ActionLookup, Found
from ..cache.stores import Stores
from ..labels import Label
from ..load.workspace import Workspace
from ..out_tree import default_out
from ..planning import Planner
from ..rule_api import RuleSet, Sources
from ..units import count
from .console import warning


def _report(ruleset: RuleSet, metrics: dict):
    """The rule set's view of a step's metrics; without one, as JSON."""
    if ruleset.report is not None:
        return ruleset.report(metrics)
    lines = [f"{k}: {escape(json.dumps(v, sort_keys=True))}" for k, v in metrics.items()]
    return Group(*lines)


def show(workspace: Workspace, ruleset: RuleSet, label_text: str, stores: Stores, console: Console,
         plan: tuple | None = None) -> int:
    """`plan`: (target graph, planner) of the whole workspace, when the caller has one (graph)."""
    label = Label.parse(label_text)
    targets, _, planner = (plan[0], None, plan[1]) if plan else load_and_plan(workspace, ruleset, [str(label)], stores)
    target = targets.targets[label]
    planned = planner.planned[label]
    ids = planner.actions_for([label])
    if not ids:  # a target that builds nothing itself (a model): what it is, and what is built from it
        console.print(source_target(workspace, ruleset, label, stores, plan))
        return 0
    found = resolve_cached(planner, ActionLookup(ruleset, stores.action_cache, stores.cas), ids)  # local only
    tree = Tree(f"[bold]{escape(str(label))}[/]  {target.kind}()  [dim]{escape(str(target.location))}[/]")
    if planned.artifact is not None:
        hit = found.get(planned.artifact.action)
        path = default_out(workspace.root) / label.package / f"{label.name}{planned.ext}"
        if hit is not None and hit.result is not None:
            record = hit.result.outputs[planned.artifact.name]
            placed = "" if path.exists() else "  [yellow](not in out/: its checks have not passed)[/]"
            tree.add(f"artifact: {escape(workspace.rel(path))}  {record.size:,} bytes  sha256:{record.digest[:16]}{placed}")
        else:
            tree.add(f"artifact: {escape(workspace.rel(path))}  [yellow]not built with the current inputs[/]")
    complete = True
    for aid in ids:
        action = planner.actions[aid]
        hit = found.get(aid)
        if hit is None or (hit.result is None and hit.failure is None):
            complete = False
            tree.add(f"[yellow]{action.step}[/]: not in the cache (would run)  [dim]action {aid[:12]}[/]")
            continue
        if hit.result is None:  # a failure recorded for exactly these inputs
            complete = False
            node = tree.add(f"[red]{action.step}[/]: failed with these inputs (a build replays the failure; "
                            f"--retry-failed reruns it)  [dim]action {aid[:12]}[/]")
            log = stores.cas.path(hit.failure.log) if hit.failure.log and stores.cas.has(hit.failure.log) else None
            node.add(escape(hit.failure.error) + (f"\n[dim]log: {escape(str(log))}[/]" if log else ""))
            continue
        result = hit.result
        # The action's id, as `query --actions` and --build-events name it (its cache key is in --explain).
        node = tree.add(f"[green]{action.step}[/]: cached, ran in {result.seconds:.2f}s  [dim]action {aid[:12]}[/]")
        for text in result.warnings:
            node.add(warning(text))
        if result.metrics:
            node.add(_report(ruleset, result.metrics))
    console.print(tree)
    return 0 if complete else 1


def source_target(workspace: Workspace, ruleset: RuleSet, label: Label, stores: Stores, plan: tuple | None = None) -> Tree:
    """A target without actions: its declaration, the files it gives its dependents (with their
    digests), and each target built from it with its state in the cache."""
    # The whole workspace, planned once: what depends on the target, and their actions.
    targets, planner = plan if plan else load_and_plan(workspace, ruleset, ["//..."], stores)[::2]
    users = sorted(targets.graph.predecessors(label)) if label in targets.graph else []
    target = targets.targets[label]
    tree = Tree(f"[bold]{escape(str(label))}[/]  {target.kind}()  [dim]{escape(str(target.location))}[/]")
    declared = tree.add("declared")
    for field, value in target.decl.model_dump(mode="json", exclude_defaults=True).items():
        declared.add(f"{field} = {escape(json.dumps(value))}")
    for provider in planner.planned[label].providers:
        for field, value in vars(provider).items():
            if isinstance(value, Sources):
                files = tree.add(f"{field}: {count(len(value.files), 'file')}")
                for path, digest in value.files:
                    files.add(f"{escape(path)}  [dim]sha256:{digest[:16]}[/]")
    built = tree.add(f"built from it: {count(len(users), 'target')}" if users else "built from it: nothing")
    lookup = ActionLookup(ruleset, stores.action_cache, stores.cas)
    for user in users:
        ids = planner.actions_for([user])
        found = resolve_cached(planner, lookup, ids)
        state = target_state(workspace, planner, user, ids, found)
        built.add(f"{escape(str(user))}  {targets.targets[user].kind}()  [{_STYLE[state]}]{state}[/]")
    return tree


_STYLE = {"built": "green", "failed": "red", "stale": "yellow", "never built": "yellow", "source": "blue"}


def target_state(workspace: Workspace, planner: Planner, label: Label, ids: list[str], found: dict[str, Found]) -> str:
    """In the cache, with the current inputs: built (every action cached), failed, stale (not
    built, though out/ holds an older artifact) or never built; a target without actions is a source."""
    if not ids:
        return "source"
    if any(found.get(aid) is not None and found[aid].failure is not None for aid in ids):
        return "failed"
    if all(found.get(aid) is not None and found[aid].result is not None for aid in ids):
        return "built"
    planned = planner.planned[label]
    path = default_out(workspace.root) / label.package / f"{label.name}{planned.ext}"
    return "stale" if planned.artifact is not None and path.exists() else "never built"


def resolve_cached(planner: Planner, lookup: ActionLookup, action_ids: list[str]) -> dict[str, Found]:
    """Resolve actions from the cache alone, running nothing: what a build would reuse right now
    (for `show`). An action whose inputs are not all cached stays unresolved."""
    found: dict[str, Found] = {}

    def result_of(aid: str) -> ActionResult:
        return found[aid].result

    for aid in action_ids:  # dependency order
        preds = list(planner.graph.predecessors(aid))
        if all(p in found and found[p].result is not None for p in preds):
            found[aid] = lookup.find(lookup.key(planner.actions[aid], result_of))
    return found

"""One build: load, plan, schedule, place outputs. Returns what happened; prints nothing itself."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .cache.cas import CorruptBlob
from .cache.lookup import ActionLookup
from .cache.scratch import DAY_NS, remove_idle_locks
from .cache.layout import Layout
from .cache.stores import Stores
from .errors import FlagError
from .events import EventLog, write_profile
from .exec.executor import Executor
from .exec.local import LocalExecutor
from .exec.scheduler import CACHED, RAN, BuildState, Outcome, Rerun, Scheduler
from .labels import Label
from .load.target_graph import TargetGraph
from .load.workspace import Workspace
from .out_tree import OutTree, default_out, lock_out
from .planning import Planner
from .rule_api import Action, RuleSet


@dataclass
class BuildOptions:
    patterns: list[str]
    cache_dir: Path
    jobs: int = 2
    keep_going: bool = False
    build_events: Path | None = None
    profile: Path | None = None  # a Chrome trace of the build (events.write_profile)
    explain: bool = False
    retry_failed: bool = False  # rerun actions whose failure is recorded for their current key
    out_dir: Path | None = None  # default: <workspace>/out
    settings: dict = field(default_factory=dict)  # build-wide settings the rules read, e.g. "sign_key"
    executor: str = "local"  # or "ray"
    ray_address: str | None = None  # default: $RAY_ADDRESS, else a local Ray instance for the build
    remote_cache: str | None = None  # URL of a Bazel-protocol HTTP cache
    remote_upload: bool = True
    remote_cache_key: Path | None = None  # ed25519 PEM: a private key signs uploads, either kind verifies


EXECUTORS = ("local", "ray")


@dataclass
class BuildSummary:
    targets: list[Label]
    state: BuildState
    failed_targets: list[Label] = field(default_factory=list)
    placed: dict[Label, Path] = field(default_factory=dict)
    companions: dict[Label, list[Path]] = field(default_factory=dict)  # files placed beside an artifact
    seconds: float = 0.0
    store_warnings: list[str] = field(default_factory=list)  # bad records dropped, corrupt blobs healed
    removed: list[Path] = field(default_factory=list)  # stale outputs removed from out/
    remote: object | None = None  # the remote cache's stats (remote_cache.RemoteStats), when one was used
    remote_url: str = ""  # with any credentials redacted
    remote_warnings: list[str] = field(default_factory=list)
    executor: str = "local"
    read: dict[str, list[int]] = field(default_factory=dict)  # each file digested, by its stat then (cli/noop.py)

    @property
    def ok(self) -> bool:
        return not self.failed_targets

    def count(self, status: str) -> int:
        return self.state.count(status)


def load_and_plan(workspace: Workspace, ruleset: RuleSet, patterns: list[str], stores: Stores,
                  settings: dict | None = None):
    targets = TargetGraph(workspace, ruleset)
    labels = targets.expand(patterns)
    planner = Planner(targets, ruleset, stores.digests, settings, stores.scan)
    planner.plan(labels)
    return targets, labels, planner


def server_imports(ruleset: RuleSet, planner: Planner) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What the local workers' fork servers import (exec/fork_servers.py): the rule set's light
    imports, if the build plans a light step, and all its worker imports with the warm-up of each
    step kind the build plans (StepKind.warm_up), so a build with no lowering pays for none; only
    the light imports if it plans nothing else."""
    kinds = [ruleset.steps[s] for s in sorted({action.step for action in planner.actions.values()})]
    warm_ups = {k.warm_up: k.light for k in kinds if k.warm_up}
    light = ruleset.light_imports + tuple(w for w in sorted(warm_ups) if warm_ups[w]) if any(k.light for k in kinds) else ()
    if light and all(k.light for k in kinds):
        return light, light
    return light, ruleset.worker_imports + tuple(w for w in sorted(warm_ups) if w not in light)


def make_executor(options: BuildOptions, ruleset: RuleSet, workspace: Workspace, planner: Planner) -> Executor:
    if options.executor == "local":
        light, full = server_imports(ruleset, planner)
        return LocalExecutor(max(1, options.jobs), ruleset.worker, workspace.root, Layout(options.cache_dir).logs,
                             full, light, frozenset(s.name for s in ruleset.steps.values() if s.light))
    if options.executor == "ray":
        from .cache.remote import headers_from_env
        from .exec.ray import (
            RayExecutor,  # Ray is an optional extra, imported only when asked for
        )

        # A remote cache that takes uploads carries the actions' inputs and outputs between nodes.
        remote = (options.remote_cache, headers_from_env(os.environ)) if options.remote_cache and options.remote_upload else None
        return RayExecutor(max(1, options.jobs), ruleset.worker, workspace.root, options.ray_address, remote)
    raise FlagError("--executor", options.executor, f"unknown executor; expected one of: {', '.join(EXECUTORS)}")


def make_remote(options: BuildOptions):
    if not options.remote_cache:
        return None
    from .cache.remote import RemoteCache, headers_from_env

    return RemoteCache(options.remote_cache, upload=options.remote_upload, key=options.remote_cache_key,
                       headers=headers_from_env(os.environ))


class _Placement:
    """A target's artifact goes to out/ once it and all its checks have succeeded."""

    def __init__(self, planner: Planner, labels: list[Label], out: OutTree, placed: dict[Label, Path],
                 companions: dict[Label, list[Path]]):
        self.planner, self.out, self.placed, self.companions = planner, out, placed, companions
        self.waiting_on = {l: planner.planned[l].required_actions() for l in labels if planner.planned[l].artifact}
        self.needed_by: dict[str, list[Label]] = {}
        for label, actions in self.waiting_on.items():
            for aid in actions:
                self.needed_by.setdefault(aid, []).append(label)

    def finished(self, outcome: Outcome, outcomes: dict[str, Outcome]) -> list[Rerun]:
        """Place what this action was the last to wait on; the reruns a corrupt blob needs."""
        if outcome.status not in (RAN, CACHED):
            return []
        reruns = []
        for label in self.needed_by.get(outcome.action.id, []):
            self.waiting_on[label].discard(outcome.action.id)
            if not self.waiting_on[label] and label not in self.placed:
                reruns += self._place(label, outcomes)
        return reruns

    def _place(self, label: Label, outcomes: dict[str, Outcome]) -> list[Rerun]:
        planned = self.planner.planned[label]
        placed = []
        for ext, output in [(planned.ext, planned.artifact), *planned.companions]:
            try:
                placed.append(self.out.place(label, ext, outcomes[output.action].result.outputs[output.name])[0])
            except CorruptBlob as bad:  # removed from the CAS: run its producer again, then place it
                return [Rerun([output.action], f"blob {str(bad)[:16]}, an output of {label},",
                              f"the blob {bad} stayed corrupt after its producer ran again")]
        self.placed[label], self.companions[label] = placed[0], placed[1:]
        return []

    def unplaced(self) -> list[Label]:
        return [l for l in self.waiting_on if l not in self.placed]


def build(
    workspace: Workspace,
    ruleset: RuleSet,
    options: BuildOptions,
    on_progress: Callable[[str, Outcome | Action], None] = lambda *_: None,
) -> BuildSummary:
    start = time.monotonic()
    out_dir = options.out_dir or default_out(workspace.root)
    out_lock = lock_out(out_dir, on_progress)
    stores = Stores(options.cache_dir)
    events = EventLog(options.build_events)
    try:
        targets, labels, planner = load_and_plan(workspace, ruleset, options.patterns, stores, options.settings)
        out = OutTree(out_dir, stores.cas, stores.digests, stores.layout.outputs)
        summary = BuildSummary(labels, BuildState())
        placement = _Placement(planner, labels, out, summary.placed, summary.companions)

        def on_event(kind: str, item) -> list[Rerun]:
            reruns = []
            if kind == "finished":
                events.action(item)
                reruns = placement.finished(item, scheduler.state.outcomes)
            on_progress(kind, item)
            return reruns

        remote = make_remote(options)
        lookup = ActionLookup(ruleset, stores.action_cache, stores.cas, remote)
        scheduler = Scheduler(
            planner, lookup, make_executor(options, ruleset, workspace, planner), stores.layout,
            options.keep_going, on_event, options.explain, options.retry_failed,
        )
        summary.executor = options.executor
        try:
            wanted = planner.actions_for(labels)
            on_progress("planned", len(wanted))
            summary.state = scheduler.run(wanted)
            if lookup.uploads_pending():
                on_progress("note", f"uploading to the remote cache ({lookup.uploads_pending()} results to go)")
            lookup.finish_uploads()
        finally:
            lookup.finish_uploads(cancel=True)  # interrupted: what is queued stays here
            if remote is not None:
                remote.close()
                summary.remote, summary.remote_url, summary.remote_warnings = remote.stats, remote.url, remote.warnings
        if options.profile is not None:
            write_profile(options.profile, list(summary.state.outcomes.values()))
        summary.removed = out.remove_stale({l: p.exts() for l, p in planner.planned.items() if p.artifact},
                                           options.patterns, targets.all_packages)
        summary.store_warnings = stores.warnings + summary.state.healed
        summary.failed_targets = placement.unplaced()
        summary.seconds = time.monotonic() - start
        summary.read = dict(stores.digests.seen)
        return summary
    finally:
        events.close()
        stores.close()
        out_lock.release()
        # TMPDIR is not ours to fill: the out/ locks of workspaces no build has opened for a day go.
        remove_idle_locks(Path(out_lock.lock_file).parent, time.time_ns() - DAY_NS)

"""Run the action graph: cache lookups first (action_lookup), misses on an executor (local workers, Ray).

Keys are computed when an action becomes ready, from the content digests of its inputs, so an
action whose inputs came out unchanged is a cache hit even after its producer re-ran.
A failed action fails every action downstream of it; without --keep-going nothing new starts.
A failure the step reported is recorded under the action's key and replayed, without running
anything, while the key stays the same (--retry-failed reruns it).
"""
from __future__ import annotations

import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import networkx as nx

from ..cache.action_cache import ActionResult, FailureRecord
from ..cache.cas import CorruptBlob
from ..cache.lookup import ActionLookup
from ..cache.layout import Layout
from ..planning import Planner
from ..rule_api import METRICS, Action, Sources
from ..rule_api.wire import FileInput, SourcesInput, StepReply, StepRequest
from .claims import Claims
from .executor import Executor
from .staging import LOG, Staging

RAN, CACHED, FAILED, SKIPPED = "ran", "cached", "failed", "skipped"
_POLL = 0.2  # seconds between looks at actions another build is running
_LOW_DISK = 64 * 2**20  # free bytes below which a dead worker is most likely a full disk's victim


def _disk_hint(path: Path) -> str:
    """Why a worker may have died, when the disk it writes to is (nearly) full."""
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return ""
    if free >= _LOW_DISK:
        return ""
    return (f"; the disk holding {path.parent} has {free // 2**20} MB free, so a full disk is the likely cause: free "
            "space (`modelbuild cache gc --max-size SIZE` shrinks the cache) and build again")


@dataclass
class Outcome:
    action: Action
    status: str
    key: str | None = None
    seconds: float = 0.0
    result: ActionResult | None = None
    error: str | None = None
    log: str | None = None  # the captured output of a failed action
    show_log: bool = True  # worth showing without --verbose (a step's own message says it all otherwise)
    log_path: Path | None = None  # where the whole log is kept
    reasons: list[str] | None = None  # with --explain: why it ran
    replayed: FailureRecord | None = None  # a recorded failure of this key, replayed instead of a run
    start: float = 0.0  # seconds from the build's start to when it was ready to run
    # seconds waiting for a free worker, staging inputs, waiting for the worker to start the step (a
    # worker still importing the toolchain; on Ray, fetching the inputs to its node), running, storing
    phases: dict[str, float] | None = None
    worker: str | None = None  # where it ran, as the executor names it


@dataclass
class BuildState:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    healed: list[str] = field(default_factory=list)  # corrupt blobs found, and the actions rerun for them

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes.values() if o.status == status)

    def replayed(self) -> int:
        return sum(1 for o in self.outcomes.values() if o.replayed is not None)

    def warnings(self) -> list[tuple[Outcome, str]]:
        """What the steps warned about, for the actions of this build, whether they ran or were cached."""
        return [(o, w) for o in self.outcomes.values() if o.result is not None
                for w in o.result.warnings]


@dataclass(frozen=True)
class Rerun:
    """A listener's request, on an action that finished: run these producers again (an output of
    theirs was found corrupt and removed), then what waits on them; if_refused is the error when
    they already ran again for it."""

    producers: list[str]
    why: str
    if_refused: str


class Scheduler:
    def __init__(
        self,
        planner: Planner,
        lookup: ActionLookup,
        executor: Executor,
        layout: Layout,
        keep_going: bool,
        on_event: Callable[[str, Outcome | Action], list[Rerun] | None],
        explain: bool = False,
        retry_failed: bool = False,
    ):
        self.planner = planner
        self.lookup = lookup
        self.cas = lookup.cas
        self.executor = executor
        self.keep_going = keep_going
        # ("started" | "finished", ...) for progress, events and outputs; a listener that finds a finished
        # action's output bad (placing it in out/) answers with the reruns it needs.
        self.on_event = on_event
        self.staging = Staging(layout.tmp, self.cas)
        self.failed_logs = layout.failed_logs
        self.state = BuildState()
        self._started: dict[str, float] = {}
        self._marks: dict[str, dict[str, float]] = {}  # per action: when it was ready, staged, sent, answered
        self._workers: dict[str, str | None] = {}
        self._t0 = time.monotonic()
        self._keys: dict[str, str] = {}
        self.explain = explain
        self.retry_failed = retry_failed
        self._reasons: dict[str, list[str]] = {}
        self.claims = Claims(layout.locks)
        self._rerun_requests: list[str] = []  # actions to resolve again, before anything else waiting
        self._reruns: dict[str, int] = {}

    def _result_of(self, aid: str) -> ActionResult:
        return self.state.outcomes[aid].result

    # The loop ---------------------------------------------------------------------------------
    def run(self, action_ids: list[str]) -> BuildState:
        self._t0 = time.monotonic()
        self._chain = self._chain_lengths()
        self._waiting = list(action_ids)  # dependency order
        self._queued: list[str] = []  # ready to run, not started
        self._blocked: list[str] = []  # another build on this cache is running them now
        self._stopping = False
        try:
            while (self._waiting or self._queued or self._blocked or self.executor.running()
                   or self._rerun_requests):
                self._unblock()
                if self._rerun_requests:  # producers of corrupt blobs, then what waits on them
                    self._waiting = self._rerun_requests + [a for a in self._waiting if a not in self._rerun_requests]
                    self._rerun_requests = []
                self._resolve_ready()
                if self._stopping:
                    self._skip_the_rest()
                self._start_queued()
                running = self.executor.running()
                if not running:
                    if self._blocked and not self._queued:
                        time.sleep(_POLL)
                    continue
                if not self._stopping:  # downstream work is coming: have its workers importing already
                    self.executor.warm(min(len(self._waiting), running + self.executor.free()) - running)
                for aid, reply in self.executor.wait(timeout=_POLL if self._blocked else None):
                    if not self._collect(aid, reply) and not self.keep_going:
                        self._stopping = True
        finally:
            self.executor.shutdown()
            self.staging.discard_all()
            self.claims.release_all()
        return self.state

    def _chain_lengths(self) -> dict[str, int]:
        """Per action, how many actions the longest chain from it to the end of the build holds."""
        graph, lengths = self.planner.graph, {}
        for aid in reversed(list(nx.topological_sort(graph))):
            lengths[aid] = 1 + max((lengths[s] for s in graph.successors(aid)), default=0)
        return lengths

    def _weight(self, aid: str) -> float:
        """The heaviest of its inputs, by the weight metric of the step that made each (0: none has one)."""
        weights = [0.0]
        for pid in self.planner.graph.predecessors(aid):
            result, kind = self._result_of(pid), self.planner.ruleset.steps[self.planner.actions[pid].step]
            value = result.metrics.get(kind.weight_metric) if result is not None and kind.weight_metric else None
            if isinstance(value, (int, float)):
                weights.append(float(value))
        return max(weights)

    def _failed_and_stops(self, aid: str) -> bool:
        """A finished action's failure (a replayed one too) stops the build, as a real one does."""
        return self.state.outcomes[aid].status == FAILED and not self.keep_going

    def _unblock(self) -> None:
        """The blocked actions whose holder finished (or died): its result, or our turn."""
        for aid in list(self._blocked):
            if self.claims.claim(aid, self._keys[aid]):
                self._blocked.remove(aid)
                if self._try_cache(aid):
                    self.claims.release(aid)
                    self._stopping = self._stopping or self._failed_and_stops(aid)
                else:
                    self._queued.insert(0, aid)

    def _resolve_ready(self) -> None:
        """Resolve what is ready: failures propagate, cache hits complete at once; one pass in
        dependency order resolves a whole cached chain."""
        progressed = True
        while progressed:
            progressed, still = False, []
            for aid in self._waiting:
                preds = [self.state.outcomes.get(p) for p in self.planner.graph.predecessors(aid)]
                if any(p is not None and p.status in (FAILED, SKIPPED) for p in preds):
                    self._finish(Outcome(self.planner.actions[aid], SKIPPED, error="a dependency failed"))
                    progressed = True
                elif all(p is not None for p in preds):
                    if not self._try_cache(aid):
                        self._queued.append(aid)
                    elif self._failed_and_stops(aid):
                        self._stopping = True
                    progressed = True
                else:
                    still.append(aid)
            self._waiting = still

    def _skip_the_rest(self) -> None:
        for aid in self._waiting + self._queued + self._blocked:
            self.claims.release(aid)
            self._finish(Outcome(self.planner.actions[aid], SKIPPED, error="build stopped after a failure"))
        self._waiting, self._queued, self._blocked = [], [], []

    def _start_queued(self) -> None:
        """Start what the executor has room for; an action another build holds waits for its result
        rather than repeat its work."""
        # The longest chain of work first (as ninja's critical path): an export that three steps wait on
        # starts before a last check. Among equal chains, the heavier by its inputs' weight
        # (StepKind.weight_metric): lowering MobileNetV2's 300 ops takes 10 s, a ResNet-18's 100 ops 4 s,
        # and the longest job started last is what keeps one core busy after the other is done.
        # Before all that, what can start at once: while the full workers' server imports (6 s), the
        # light ones run exports rather than a partition waiting for it.
        starts_now = {step: self.executor.starts_now(step) for step in {self.planner.actions[a].step for a in self._queued}}
        for aid in sorted(self._queued, key=lambda a: (not starts_now[self.planner.actions[a].step],
                                                        -self._chain.get(a, 0), -self._weight(a))):
            if not self.executor.free():
                break
            self._queued.remove(aid)
            if not self.claims.claim(aid, self._keys[aid]):
                self._blocked.append(aid)
                continue
            if self._try_cache(aid):  # it finished between our lookup and our claim
                self.claims.release(aid)
                self._stopping = self._stopping or self._failed_and_stops(aid)
                continue
            try:
                self._dispatch(aid)
            except CorruptBlob as bad:
                self._corrupt_input(aid, bad)

    def _corrupt_input(self, aid: str, bad: CorruptBlob) -> None:
        """An input's blob was bad (and is removed): its producers run again, then this action."""
        self.staging.discard(aid)
        producers = self._incomplete_producers(aid)
        self.claims.release(aid)
        if producers and self.rerun(producers, f"blob {str(bad)[:16]}, an input of {self.planner.actions[aid].step}"):
            self._rerun_requests.append(aid)  # after its producers, again
            return
        error = f"a cached input stayed corrupt (blob {bad}) after its producer ran again"
        self._finish(Outcome(self.planner.actions[aid], FAILED, self._keys.get(aid), error=error))
        self._stopping = self._stopping or not self.keep_going

    # Healing -----------------------------------------------------------------------------------
    def _incomplete_producers(self, aid: str) -> list[str]:
        """The actions whose outputs this one reads and the CAS no longer holds whole."""
        found = []
        for value in self.planner.actions[aid].inputs.values():
            if isinstance(value, Sources) or value.name == METRICS:
                continue
            if not self.lookup.complete(self.state.outcomes[value.action].result.outputs[value.name]):
                found.append(value.action)
        return sorted(set(found))

    def rerun(self, producers: list[str], why: str) -> bool:
        """Run these actions again in this build (a blob of theirs was corrupt and has been removed),
        unless one already ran again for that reason. Their dependents wait for them once more."""
        if any(self._reruns.get(p, 0) >= 1 for p in producers):
            return False
        for pid in producers:
            self._reruns[pid] = self._reruns.get(pid, 0) + 1
            self.state.outcomes.pop(pid, None)
            self.state.healed.append(f"{why} was corrupt or missing: ran {self.planner.actions[pid].step} "
                                     f"({self.planner.actions[pid].label}) again")
        self._rerun_requests = producers + [a for a in self._rerun_requests if a not in producers]
        return True

    def _finish(self, outcome: Outcome) -> None:
        marks = self._marks.pop(outcome.action.id, {})
        outcome.start = marks.get("ready", time.monotonic()) - self._t0
        if "replied" in marks:
            now = time.monotonic()
            run = min(outcome.seconds, marks["replied"] - marks["sent"])
            outcome.phases = {"wait": marks["staging"] - marks["ready"], "inputs": marks["sent"] - marks["staging"],
                              "worker": marks["replied"] - marks["sent"] - run, "run": run,
                              "store": now - marks["replied"]}
            outcome.worker = self._workers.pop(outcome.action.id, None)
        self.state.outcomes[outcome.action.id] = outcome
        for request in self.on_event("finished", outcome) or ():
            if not self.rerun(request.producers, request.why):
                outcome.status = FAILED
                outcome.error = request.if_refused

    def _try_cache(self, aid: str) -> bool:
        action = self.planner.actions[aid]
        self._marks.setdefault(aid, {}).setdefault("ready", time.monotonic())
        key = self._keys[aid] = self.lookup.key(action, self._result_of)
        found = self.lookup.find(key, failures=not self.retry_failed)
        if found.result is not None:
            self._finish(Outcome(action, CACHED, key, 0.0, found.result))
            return True
        if found.failure is not None:
            self._finish(self._replay(action, key, found.failure))
            return True
        if self.explain:
            self._reasons[aid] = self.lookup.reasons(action, self._result_of)
        return False

    def _replay(self, action: Action, key: str, failure: FailureRecord) -> Outcome:
        log_path = self._readable_log(action, failure.log)
        log = log_path.read_text(errors="replace") if log_path else None
        return Outcome(action, FAILED, key, 0.0, error=failure.error, log=log, show_log=failure.show_log,
                       log_path=log_path, replayed=failure)

    def _readable_log(self, action: Action, digest: str | None) -> Path | None:
        """A failed action's log where a person finds it: logs/failed/<package>/<name>.<step>.log in the
        cache, the last failure's of that target and step (the CAS keeps it under its digest)."""
        if not digest or not self.cas.has(digest):
            return None
        label = action.label
        path = self.failed_logs / (label.package or "_root") / f"{label.name}.{action.step}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.cas.path(digest), path)
        return path

    def _input(self, value, staging: Path, name: str) -> SourcesInput | FileInput:
        if isinstance(value, Sources):
            return self.staging.input(value, staging, name, None, value.digest())
        return self.staging.input(value, staging, name, self.state.outcomes[value.action].result,
                                  self.lookup.input_digest(value, self._result_of))

    def _dispatch(self, aid: str) -> None:
        action = self.planner.actions[aid]
        self._marks[aid]["staging"] = time.monotonic()
        staging = self.staging.open(aid)
        request = StepRequest(
            action=aid,
            step=action.step,
            module=self.planner.ruleset.steps[action.step].module,
            label=str(action.label),
            config=action.config,
            inputs={n: self._input(v, staging, n) for n, v in action.inputs.items()},
            outputs=list(action.outputs),
            out_dir=str(staging / "out"),
            log=str(staging / LOG),
        )
        self._started[aid] = self._marks[aid]["sent"] = time.monotonic()
        self.on_event("started", action)
        self._workers[aid] = self.executor.submit(request)

    def _collect(self, aid: str, reply: StepReply) -> bool:
        action = self.planner.actions[aid]
        staging = self.staging.take(aid)
        self._marks[aid]["replied"] = time.monotonic()
        # the step's own time, as its worker measured it (a worker that died measured nothing)
        seconds = reply.seconds or self._marks[aid]["replied"] - self._started[aid]
        try:
            if reply.crashed:
                reply.error = (reply.error or "the worker died") + _disk_hint(staging)
            log_text, log_digest = self.staging.log(staging)
            if not reply.ok:
                if not reply.transient:  # a worker that died says nothing about the inputs
                    self.lookup.cache.put_failure(self._keys[aid], FailureRecord(
                        step=action.step, error=reply.error or "failed", log=log_digest, show_log=reply.show_log,
                        seconds=seconds,
                    ))
                self._finish(Outcome(
                    action, FAILED, self._keys[aid], seconds, error=reply.error,
                    log=log_text, show_log=reply.show_log, log_path=self._readable_log(action, log_digest),
                ))
                return False
            outputs = self.staging.ingest(staging, action.outputs)
            if isinstance(outputs, str):
                error = f"the {action.step} step finished without writing its output '{outputs}'"
                self.lookup.cache.put_failure(self._keys[aid], FailureRecord(step=action.step, error=error, log=log_digest,
                                                                      seconds=seconds))
                self._finish(Outcome(action, FAILED, self._keys[aid], seconds, error=error, log=log_text))
                return False
            result = ActionResult(step=action.step, outputs=outputs, metrics=reply.metrics, warnings=reply.warnings, log=log_digest,
                                  seconds=seconds)
            # As the cache will hand it back (inf and nan become null): a hit and a run read the same.
            result = ActionResult.model_validate_json(result.model_dump_json())
            # The record goes in last: a crash before this line leaves blobs, never a dangling entry.
            self.lookup.store(action, self._keys[aid], result, self._result_of)
            self._finish(Outcome(action, RAN, self._keys[aid], seconds, result, reasons=self._reasons.get(aid)))
            return True
        except Exception as exc:  # an engine fault while storing: fail the action, keep the build sane
            self._finish(Outcome(action, FAILED, self._keys.get(aid), seconds, error=f"storing outputs failed: {exc!r}",
                                 log=traceback.format_exc()))
            return False
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            self.claims.release(aid)

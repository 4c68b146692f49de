"""The scheduler's own behaviour, against an in-process executor: no worker, no torch, milliseconds.

Actions are planned straight into a Planner (no BUILD.models); steps are the Python functions of
fake_executor.py. What is checked is the engine's logic: what runs, what is cached, what a failure
does to the rest, and how a corrupt input is healed.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from types import SimpleNamespace

import networkx as nx
import pytest
from fake_executor import FakeExecutor, crash, fail, no_output, upper
from pydantic import BaseModel, ConfigDict

from buildsys.cache.lookup import ActionLookup
from buildsys.cache.stores import Stores
from buildsys.exec.scheduler import CACHED, FAILED, RAN, SKIPPED, Scheduler
from buildsys.labels import Label
from buildsys.planning import Planner
from buildsys.rule_api import RuleSet, StepKind


class UpperConfig(BaseModel):
    model_config = ConfigDict(extra="allow")  # text, suffix, and what a behaviour is told to do


# A step's module is only hashed into its key here (the fake executor runs Python functions).
RULES = RuleSet(kinds={}, steps={"upper": StepKind("upper", "rules.report", UpperConfig, ())},
                worker="fake_executor", rule_roots=("rules",))
BEHAVIOURS = {"upper": upper, "fail": fail, "crash": crash, "no_output": no_output}


class Build:
    """One workspace and cache; each run() plans the given chains afresh and schedules them."""

    def __init__(self, root: Path):
        self.root = root
        self.executor: FakeExecutor | None = None

    def plan(self, chains: dict[str, list[dict]], rules: RuleSet = RULES) -> tuple[Planner, dict[str, list[str]]]:
        """chains: target name -> configs of its actions, each fed by the one before."""
        self.stores = Stores(self.root / "cache")
        targets = SimpleNamespace(workspace=SimpleNamespace(root=self.root))
        planner = Planner(targets, rules, self.stores.digests)
        ids = {}
        for name, configs in chains.items():
            previous, ids[name] = None, []
            for config in configs:
                inputs = {"src": previous.output("out")} if previous else {}
                previous = planner.add_action(Label.parse(f"//:{name}"), config.get("kind", "upper"), config, inputs, ("out",))
                ids[name].append(previous.id)
        return planner, ids

    def run(self, chains: dict[str, list[dict]], keep_going: bool = False, retry_failed: bool = False, jobs: int = 2,
            before=None):
        planner, ids = self.plan(chains)
        if before is not None:
            before(self.stores, ids)
        self.executor = FakeExecutor(BEHAVIOURS, jobs)
        lookup = ActionLookup(RULES, self.stores.action_cache, self.stores.cas)
        scheduler = Scheduler(planner, lookup, self.executor, self.stores.layout, keep_going, lambda *_: None,
                              retry_failed=retry_failed)
        try:
            state = scheduler.run(list(nx.lexicographical_topological_sort(planner.graph)))
        finally:
            self.stores.close()
        return {name: [state.outcomes[a].status if a in state.outcomes else None for a in chain]
                for name, chain in ids.items()}, state


    def order(self, chains: dict[str, list[dict]], rules: RuleSet = RULES, executor=FakeExecutor) -> list[str]:
        """The labels of the actions in the order one worker ran them, given the chains in this order."""
        planner, ids = self.plan(chains, rules)
        self.executor = executor(BEHAVIOURS, 1)
        scheduler = Scheduler(planner, ActionLookup(rules, self.stores.action_cache, self.stores.cas), self.executor,
                              self.stores.layout, False, lambda *_: None)
        try:
            scheduler.run([aid for chain in ids.values() for aid in chain])
        finally:
            self.stores.close()
        return self.executor.ran


@pytest.fixture
def b(tmp_path: Path) -> Build:
    return Build(tmp_path)


CHAIN = {"a": [{"text": "abc"}, {"suffix": "!"}, {"suffix": "?"}]}


def test_a_chain_runs_once_then_is_cached_without_running_anything(b):
    statuses, state = b.run(CHAIN)
    assert statuses == {"a": [RAN, RAN, RAN]}
    assert b.executor.stopped and len(b.executor.ran) == 3
    statuses, _ = b.run(CHAIN)
    assert statuses == {"a": [CACHED, CACHED, CACHED]}
    assert b.executor.ran == []


def test_an_unchanged_output_stops_the_rebuild_early(b):
    b.run(CHAIN)
    # "ABC" upper-cases to what "abc" did: the first action reruns, its output is the same, the rest is cached.
    statuses, _ = b.run({"a": [{"text": "ABC"}, {"suffix": "!"}, {"suffix": "?"}]})
    assert statuses == {"a": [RAN, CACHED, CACHED]}


def test_a_failure_skips_its_dependents_and_stops_the_build(b):
    chains = {"a": [{"behaviour": "fail"}, {"suffix": "!"}], "b": [{"text": "x"}, {"suffix": "!"}]}
    statuses, state = b.run(chains, jobs=1)
    assert statuses["a"] == [FAILED, SKIPPED]
    assert FAILED not in statuses["b"] and RAN not in statuses["b"][1:]  # nothing new started after the failure
    assert SKIPPED in statuses["b"]
    failed = [o for o in state.outcomes.values() if o.status == FAILED]
    assert failed[0].error == "//:a: it failed" and not failed[0].show_log


def test_keep_going_builds_what_does_not_depend_on_the_failure(b):
    chains = {"a": [{"behaviour": "fail"}, {"suffix": "!"}], "b": [{"text": "x"}, {"suffix": "!"}]}
    statuses, _ = b.run(chains, keep_going=True, jobs=1)
    assert statuses == {"a": [FAILED, SKIPPED], "b": [RAN, RAN]}


def test_a_reported_failure_is_replayed_until_retried(b):
    chains = {"a": [{"behaviour": "fail"}]}
    b.run(chains)
    statuses, state = b.run(chains)
    assert statuses == {"a": [FAILED]} and b.executor.ran == []
    (outcome,) = state.outcomes.values()
    assert outcome.replayed is not None and outcome.log == "about to fail\n"
    statuses, _ = b.run(chains, retry_failed=True)
    assert statuses == {"a": [FAILED]} and b.executor.ran == ["//:a"]


def test_a_dead_worker_fails_its_action_but_is_never_replayed(b):
    chains = {"a": [{"behaviour": "crash"}]}
    statuses, state = b.run(chains)
    assert statuses == {"a": [FAILED]}
    assert "died" in next(iter(state.outcomes.values())).error
    b.run(chains)
    assert b.executor.ran == ["//:a"]  # not a property of the inputs: it runs again


def test_a_step_that_writes_no_output_fails(b):
    statuses, state = b.run({"a": [{"behaviour": "no_output"}]})
    assert statuses == {"a": [FAILED]}
    assert "finished without writing its output 'out'" in next(iter(state.outcomes.values())).error


def test_a_corrupt_input_reruns_its_producer_in_the_same_build(b):
    b.run(CHAIN)

    def corrupt_first_output(stores, ids):
        """The first action's output blob, as it is in the CAS, overwritten (bit rot, a bad disk)."""
        first = b_planner.actions[ids["a"][0]]
        result = stores.action_cache.get(ActionLookup(RULES, stores.action_cache, stores.cas).key(first, None))
        path = stores.cas.path(result.outputs["out"].digest)
        path.chmod(0o644)
        path.write_text("CORRUPT")

    b_planner, _ = b.plan(CHAIN)
    b.stores.close()
    # The second action changes, so it must run and read the corrupt blob.
    statuses, state = b.run({"a": [{"text": "abc"}, {"suffix": "#"}, {"suffix": "?"}]}, before=corrupt_first_output)
    assert statuses == {"a": [RAN, RAN, RAN]}
    assert b.executor.ran.count("//:a") == 3  # the producer ran again, once
    assert any("corrupt" in h for h in state.healed)


def test_the_executor_is_never_asked_for_more_than_it_has(b):
    chains = {n: [{"text": n}] for n in "abcdef"}
    b.run(chains, jobs=2)
    assert b.executor.most_at_once <= 2 and len(b.executor.ran) == 6


def test_a_rule_asking_for_an_unknown_step_or_the_wrong_config_is_told_which(tmp_path: Path):
    """ctx.action() checks the step and its config against the rule set: a clear error at the
    target's call site, naming the steps there are, never a KeyError."""
    from buildsys.errors import Location, UserError
    from buildsys.planning import PlanningContext
    from buildsys.rule_api import Declaration, Target

    stores = Stores(tmp_path / "cache")
    try:
        planner = Planner(SimpleNamespace(workspace=SimpleNamespace(root=tmp_path)), RULES, stores.digests)
        target = Target(Label.parse("//:t"), "thing", Declaration(name="t"), Location("BUILD.models", 3), ())
        ctx = PlanningContext(planner, target)
        with pytest.raises(UserError) as unknown:
            ctx.action("uper", UpperConfig(text="a"), {}, ["out"])
        with pytest.raises(UserError) as wrong:
            ctx.action("upper", Declaration(name="x"), {}, ["out"])
        action = ctx.action("upper", UpperConfig(text="a"), {}, ["out"])
    finally:
        stores.close()
    assert str(unknown.value) == ("BUILD.models:3: thing() 't': its rule asks for a step 'uper' (did you mean 'upper'?), "
                                  "which the rule set does not have; its steps are: upper")
    assert str(wrong.value) == "BUILD.models:3: thing() 't': its rule gives the step 'upper' a Declaration; that step takes a UpperConfig"
    assert action.config == {"text": "a"}


def test_the_longest_chain_starts_first(b):
    """Two actions ready, one worker: the one with three steps behind it runs before a lone one, though
    the lone one comes first in the order the scheduler is given."""
    ran = b.order({"lone": [{"text": "x"}], "long": [{"text": "y"}, {"suffix": "!"}, {"suffix": "?"}]})
    assert ran[:2] == ["//:long", "//:long"]  # then a tie: the lone one and the last of the chain


def test_of_two_equal_chains_the_one_with_the_heavier_input_starts_first(b):
    """A step kind may name a metric of its results that weighs the work of what reads them (export's
    op count): of two ready actions with equal chains, the one whose input weighs more starts first,
    though it became ready second. Without the metric, ties keep the order they became ready in."""
    chains = {"light": [{"text": "x"}, {"suffix": "!"}], "heavy": [{"text": "x" * 50}, {"suffix": "!"}]}
    weighed = dataclasses.replace(RULES.steps["upper"], weight_metric="chars")
    assert b.order(chains) == ["//:light", "//:heavy", "//:light", "//:heavy"]
    shutil.rmtree(b.root / "cache")
    assert b.order(chains, dataclasses.replace(RULES, steps={"upper": weighed})) == ["//:light", "//:heavy", "//:heavy", "//:light"]


def test_what_can_start_at_once_starts_before_what_would_wait_for_its_worker(b):
    """While the full workers' fork server still imports, a light action (an export, an eager
    reference) starts before a longer chain whose first step would only wait for it."""
    class Importing(FakeExecutor):
        def starts_now(self, step: str) -> bool:
            return step != "full"

    rules = dataclasses.replace(RULES, steps={**RULES.steps, "full": StepKind("full", "rules.report", UpperConfig, ())})
    chains = {"long": [{"kind": "full", "behaviour": "upper", "text": "y"}, {"suffix": "!"}, {"suffix": "?"}],
              "lone": [{"text": "x"}]}
    assert b.order(chains, rules)[0] == "//:long"
    shutil.rmtree(b.root / "cache")
    assert b.order(chains, rules, Importing) == ["//:lone"] + ["//:long"] * 3


def test_the_fork_servers_import_the_warm_up_of_a_planned_step_and_no_other(b):
    """A step kind's warm-up (the partitioner's, 3 s) is paid only by builds that plan that step. A
    light step's warm-up goes to the light server (whose imports the full one inherits), and a build
    that plans light steps alone imports nothing more."""
    from buildsys.build import server_imports

    warmed = dataclasses.replace(RULES.steps["upper"], warm_up="pkg.warm_up")
    rules = dataclasses.replace(RULES, worker_imports=("json", "csv"), steps={"upper": warmed})
    for chains, expected in (({"a": [{"text": "x"}]}, ((), ("json", "csv", "pkg.warm_up"))), ({}, ((), ("json", "csv")))):
        planner, _ = b.plan(chains, rules)
        b.stores.close()
        assert server_imports(rules, planner) == expected
    light = dataclasses.replace(warmed, name="light", light=True, warm_up="pkg.light_warm_up")
    rules = dataclasses.replace(rules, light_imports=("json",), steps={"upper": warmed, "light": light})
    for chains, expected in (({"a": [{"kind": "light"}, {"text": "x"}]}, (("json", "pkg.light_warm_up"), ("json", "csv", "pkg.warm_up"))),
                             ({"a": [{"kind": "light"}]}, (("json", "pkg.light_warm_up"),) * 2),
                             ({"a": [{"text": "x"}]}, ((), ("json", "csv", "pkg.warm_up")))):
        planner, _ = b.plan(chains, rules)
        b.stores.close()
        assert server_imports(rules, planner) == expected, chains

"""The local workers' two fork servers (buildsys/exec/fork_servers.py), with a runner of the test's own
and no toolchain: a light worker is forked from the first server and has its imports only; a full
one is forked from the second, itself forked from the first, and has them all; the engine learns
when the second is done importing; and the end of the build leaves no process, reaped or alive."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from buildsys.exec.local import LocalExecutor
from buildsys.rule_api.wire import StepRequest

# The runner (RuleSet.worker): what a worker imported, and who its parent is.
RUNNER = '''import os, sys, time
from buildsys.rule_api.wire import StepReply

IMPORTS = ("colorsys", "wave")


def preload():
    for module in IMPORTS:
        __import__(module)


def run(request, root):
    time.sleep(request.config.get("sleep", 0))
    return StepReply(ok=True, metrics={"pid": os.getpid(), "parent": os.getppid(),
                                       "imported": [m for m in IMPORTS if m in sys.modules]})
'''


def request(ws: Path, n: int, step: str, **config) -> StepRequest:
    (ws / f"out{n}").mkdir()
    return StepRequest(action=f"a{n}", step=step, module="fork_probe", label=f"//:t{n}", config=config, inputs={},
                       outputs=[], out_dir=str(ws / f"out{n}"), log=str(ws / f"log{n}"))


def replies(executor: LocalExecutor, n: int) -> list[dict]:
    """The next n replies' metrics, in the order they came."""
    got, deadline = [], time.monotonic() + 60
    while len(got) < n and time.monotonic() < deadline:
        got += [done for _, done in executor.wait(timeout=5)]
    assert len(got) == n and all(done.ok for done in got), got
    return [done.metrics for done in got]


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()  # a zombie too: nothing may be left unreaped


def test_light_workers_start_from_the_first_server_and_full_ones_from_the_second(tmp_path: Path):
    ws = tmp_path.resolve()
    (ws / "fork_probe.py").write_text(RUNNER)
    sys.path.insert(0, str(ws))
    try:
        executor = LocalExecutor(2, "fork_probe", ws, ws / "logs", imports=("colorsys", "wave"),
                                 light_imports=("colorsys",), light_steps=frozenset({"light"}))
        try:
            assert executor.starts_now("light")
            executor.submit(request(ws, 0, "light"))
            [light] = replies(executor, 1)
            assert light["imported"] == ["colorsys"]  # not the rest: it started before that was imported
            first = light["parent"]
            deadline = time.monotonic() + 30
            while not executor.starts_now("full") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert executor.starts_now("full"), "the second server never said it had imported"
            executor.submit(request(ws, 1, "full"))
            [full] = replies(executor, 1)
            assert full["imported"] == ["colorsys", "wave"]
            second = full["parent"]
            assert second != first and parent_of(second) == first
            # A light step goes to the idle light worker; with both slots busy, the second slot gets one too.
            executor.submit(request(ws, 2, "light", sleep=1))
            executor.submit(request(ws, 3, "light"))
            ran = replies(executor, 2)
            assert {r["parent"] for r in ran} <= {first, second} and light["pid"] in {r["pid"] for r in ran}
            # A full step replaces an idle light worker: killed, reaped, and a full one in its place.
            executor.submit(request(ws, 4, "full", sleep=1))
            executor.submit(request(ws, 5, "full"))
            ran = replies(executor, 2)
            assert [r["parent"] for r in ran] == [second, second] and not exists(light["pid"])
            pids = {first, second, light["pid"], full["pid"], *(r["pid"] for r in ran)}
        finally:
            executor.shutdown()
        assert [pid for pid in pids if exists(pid)] == []
    finally:
        sys.path.remove(str(ws))

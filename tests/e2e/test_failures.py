"""Failures: a killed worker, a model that raises, --keep-going. Nothing built is ever lost."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import build, by_status, copy_example, read_events, run_cli, workers

from buildsys.cache.action_cache import ActionCache

BUILD = '''
model(name = "sincos", entry = "models.sincos:SinCos",
      inputs = {"x": tensor([4, 4], seed = 1), "y": tensor([4, 4], seed = 2)})
executorch_program(name = "sincos_portable", model = ":sincos")
pt2_program(name = "sincos_pt2", model = ":sincos")

model(name = "broken", entry = "models.broken:Broken", inputs = {"x": tensor([4, 4])})
executorch_program(name = "broken_portable", model = ":broken")
'''

BROKEN = '''import torch


def check(x):
    if x.shape[-1] != 3:
        raise ValueError(f"expected 3 features, got {x.shape[-1]}")


class Broken(torch.nn.Module):
    def forward(self, x):
        check(x)
        return x * 2
'''


def sincos_workspace(tmp_path: Path, with_broken: bool = False) -> Path:
    ws = copy_example(tmp_path)
    (ws / "models" / "vision" / "BUILD.models").unlink()
    (ws / "BUILD.models").write_text(BUILD if with_broken else BUILD.split('model(name = "broken"')[0])
    if with_broken:
        (ws / "models" / "broken.py").write_text(BROKEN)
    return ws


def start_build(ws: Path, *args: str) -> subprocess.Popen:
    """A build in the background, returned once an action is sent (its log is open) and a worker is there to run it."""
    proc = subprocess.Popen([sys.executable, "-m", "modelbuild", "build", "//...", *args], cwd=ws,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (list((ws / "cache" / "tmp").glob("*/log.txt")) and workers(ws, server=False)):
        time.sleep(0.02)
    return proc


def test_worker_killed_mid_action_leaves_no_trace_and_next_build_completes(tmp_path: Path):
    ws = sincos_workspace(tmp_path)
    events_path = ws / "killed.jsonl"
    proc = start_build(ws, "-j", "1", "--build-events", str(events_path))
    running = workers(ws, server=False)
    assert running, "no worker process found"
    for pid in running:
        os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out + err
    assert "died" in out, out

    events = read_events(events_path)
    failed = [e for e in events if e["status"] == "failed"]
    assert failed and "died" in failed[0]["error"]
    cache = ActionCache(ws / "cache" / "ac")
    try:
        assert all(cache.get(e["action_key"]) is None for e in failed), "a killed action left a cache entry"
        # A dead worker says nothing about the inputs: its failure is not recorded to be replayed.
        assert all(cache.get_failure(e["action_key"]) is None for e in failed)
    finally:
        cache.close()
    leftovers = [p for p in (ws / "out").rglob("*") if ".tmp-" in p.name] if (ws / "out").exists() else []
    assert leftovers == []
    assert not list((ws / "cache" / "tmp").glob("*")), "staging directories left behind"

    proc2, events2 = build(ws, "//...", events="again.jsonl")
    assert proc2.returncode == 0, proc2.stdout + proc2.stderr
    assert (ws / "out" / "sincos_portable.pte").is_file() and (ws / "out" / "sincos_pt2.pt2").is_file()


def test_model_error_shows_user_frames_and_keep_going_builds_the_rest(tmp_path: Path):
    ws = sincos_workspace(tmp_path, with_broken=True)

    proc, events = build(ws, "//...", extra=("--keep-going", "-j", "1"))
    assert proc.returncode == 1
    output = proc.stdout
    # The user's frames and error, not the toolchain's internals.
    assert "models/broken.py" in output and "(ValueError): expected 3 features, got 4" in output
    assert "check(x)" in output
    assert "site-packages" not in output.split("full log")[0]
    # The whole log, where a person finds it: by target and step, not by digest.
    log = re.search(r"full log: (\S+/logs/failed/_root/broken_portable\.export\.log)", output)
    assert log and "ValueError: expected 3 features, got 4" in Path(log.group(1)).read_text(), output
    # The dependent artifact fails with its model; everything else is built.
    assert ("export", "//:broken_portable") in by_status(events, "failed")
    assert ("partition", "//:broken_portable") in by_status(events, "skipped")
    assert (ws / "out" / "sincos_portable.pte").is_file() and (ws / "out" / "sincos_pt2.pt2").is_file()
    assert "1 of 5 targets failed (//:broken_portable)" in output
    first_error = next(e["error"] for e in events if e["status"] == "failed")

    # Unchanged, the failure is replayed from the cache at once, not run again, and says so.
    proc, events = build(ws, "//...", events="replay.jsonl", extra=("--keep-going",))
    assert proc.returncode == 1
    failed = [e for e in events if e["status"] == "failed"]
    assert [(e["step"], e["label"], e.get("replayed")) for e in failed] == [("export", "//:broken_portable", True)]
    assert failed[0]["error"] == first_error and failed[0]["seconds"] == 0
    assert by_status(events, "ran") == set()
    assert "(cached failure)" in proc.stdout and "--retry-failed" in proc.stdout
    assert "expected 3 features, got 4" in proc.stdout
    assert "0 actions run" in proc.stdout and "1 failed (1 replayed from the failure cache)" in proc.stdout
    # show says the same without building.
    shown = run_cli(ws, "show", "//:broken_portable")
    assert shown.returncode == 1 and "export: failed with these inputs" in shown.stdout, shown.stdout

    # --retry-failed runs it again (and it fails again, for real).
    proc, events = build(ws, "//...", events="retry.jsonl", extra=("--keep-going", "--retry-failed"))
    failed = [e for e in events if e["status"] == "failed"]
    assert [(e["step"], e.get("replayed")) for e in failed] == [("export", None)] and failed[0]["seconds"] > 0
    assert "replayed" not in proc.stdout

    # Fixing the model builds only what was missing.
    (ws / "models" / "broken.py").write_text(BROKEN.replace("!= 3", "!= 4").replace("expected 3", "expected 4"))
    proc, events = build(ws, "//...")
    assert proc.returncode == 0, proc.stdout
    assert {label for _, label in by_status(events, "ran")} == {"//:broken_portable"}


def test_terminated_build_stops_its_workers_and_cleans_up(tmp_path: Path):
    ws = sincos_workspace(tmp_path)
    proc = start_build(ws)
    assert workers(ws)
    proc.send_signal(signal.SIGTERM)  # what a CI timeout sends
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err, out + err
    assert workers(ws) == [], "workers (or their fork server) outlived the build"
    assert not list((ws / "cache" / "tmp").glob("*")), "staging directories left behind"
    proc2, _ = build(ws, "//...", events="after.jsonl")
    assert proc2.returncode == 0, proc2.stdout + proc2.stderr


def test_a_killed_engine_leaves_scratch_that_the_next_build_sweeps(tmp_path: Path):
    ws = sincos_workspace(tmp_path)
    proc = start_build(ws)
    assert workers(ws)
    proc.kill()  # no cleanup can run in the engine
    proc.wait()
    assert list((ws / "cache" / "tmp").iterdir()), "expected the killed build's staging to remain"
    deadline = time.time() + 60  # the fork server dies with the engine, and the workers with it
    while time.time() < deadline and workers(ws):
        time.sleep(0.1)
    proc2, _ = build(ws, "//...", events="after.jsonl")
    assert proc2.returncode == 0, proc2.stdout + proc2.stderr
    assert list((ws / "cache" / "tmp").iterdir()) == []
    assert not [p for p in (ws / "cache" / "cas").iterdir() if p.name.startswith(".tmp-")]


def test_an_out_of_memory_failure_is_not_replayed(tmp_path: Path):
    """MemoryError (like ENOSPC) is the machine's state, not the inputs': the next build runs it again."""
    ws = copy_example(tmp_path)
    (ws / "models" / "vision" / "BUILD.models").unlink()
    (ws / "BUILD.models").write_text('model(name = "hungry", entry = "models.hungry:Hungry", inputs = {"x": tensor([2])})\n'
                                     'pt2_program(name = "hungry_pt2", model = ":hungry")\n')
    (ws / "models" / "hungry.py").write_text(
        "import torch\n\n\nclass Hungry(torch.nn.Module):\n    def forward(self, x):\n"
        "        raise MemoryError('no room for the activations')\n")
    for events_file in ("first.jsonl", "second.jsonl"):
        proc, events = build(ws, events=events_file)
        failed = [e for e in events if e["status"] == "failed"]
        assert proc.returncode == 1 and len(failed) == 1 and "no room for the activations" in failed[0]["error"]
        assert "replayed" not in failed[0] and failed[0]["seconds"] > 0, failed

"""The Ray executor against a real two-node Ray cluster on this machine (testbed/ray_cluster.py): a
head with no CPUs and a worker node, so every action runs on the worker node, in a worker that
sees neither the test's workspace nor its output directories (all of it travels by content).
Real steps on the cluster: tests/cluster/test_ray_build.py builds the example workspace there."""
from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import step_request
from ray_cluster import ray_cluster

from buildsys.digests import digest_file
from buildsys.errors import UserError
from buildsys.exec.ray import RayExecutor
from buildsys.rule_api import StepReply

HERE = Path(__file__).parent
TESTBED = HERE.parents[1] / "testbed"
IMPORTS = os.pathsep.join([str(TESTBED), str(HERE.parent / "support")])  # what a driver process imports
FAKE = "ray_fake_runner"  # testbed/ray_fake_runner.py: on the worker node's PYTHONPATH, as an installed rule set would be

TINY_PY = """\
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return torch.relu(self.fc(x))
"""


@pytest.fixture(scope="module")
def addresses():
    """The cluster's two kinds of address: its GCS ("127.0.0.1:PORT", a driver on a node of the
    cluster) and its Ray Client server ("ray://127.0.0.1:PORT", a driver anywhere)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        client_port = s.getsockname()[1]
    with ray_cluster(worker_cpus=2, worker_env={"PYTHONPATH": str(TESTBED)}, client_port=client_port) as address:
        yield {"gcs": address, "client": f"ray://127.0.0.1:{client_port}"}


@pytest.fixture(scope="module")
def cluster(addresses):
    return addresses["gcs"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("rayws")
    (ws / "raytiny.py").write_text(TINY_PY)  # a name no other module on the path has
    (ws / "raypkg" / "data").mkdir(parents=True)
    (ws / "raypkg" / "mod.py").write_text("VALUE = 42\n")
    (ws / "raypkg" / "data" / "table.txt").write_text("a table\n")
    return ws


def sources(ws: Path, *paths: str) -> dict:
    return {"sources": [(p, digest_file(ws / p)) for p in paths]}


def request(out: Path, **fields):
    out.mkdir(parents=True, exist_ok=True)
    fields.setdefault("action", fields.get("step", "test"))
    return step_request({"config": {}, "inputs": {}, "outputs": [], "out_dir": str(out), "log": str(out / "log"), **fields})


def run_all(executor, requests, timeout: float = 240) -> dict[str, StepReply]:
    """Drive an executor as the scheduler does: submit while it has room, collect what finishes."""
    replies, queue, deadline = {}, list(requests), time.monotonic() + timeout
    while queue or executor.running():
        assert time.monotonic() < deadline, f"still running after {timeout} s: {replies}"
        while queue and executor.free() > 0:
            executor.submit(queue.pop(0))
        for action, reply in executor.wait(5):
            replies[action] = reply
    return replies


def worker_node(ray) -> str:
    (node,) = [n["NodeID"] for n in ray.ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
    return node


@pytest.mark.parametrize("via", ["gcs", "client"])
def test_inputs_and_outputs_travel_by_content(addresses, via, workspace, tmp_path):
    cluster = addresses[via]
    blob = tmp_path / "in" / "tool.sh"
    tree = tmp_path / "in" / "model.mlpackage"
    (tree / "Data" / "weights").mkdir(parents=True)
    (tree / "empty").mkdir()
    blob.write_bytes(b"#!/bin/sh\necho hi\n")
    blob.chmod(0o755)
    (tree / "Manifest.json").write_text("{}")
    (tree / "Data" / "weights" / "weight.bin").write_bytes(bytes(range(256)) * 100)
    key = tmp_path / "keys" / "release.key"  # outside the workspace, as a signing key is
    key.parent.mkdir()
    key.write_text("a key\n")
    outside = os.path.relpath(key, workspace)
    inputs = {"src": sources(workspace, "raypkg/mod.py", "raypkg/data/table.txt", outside),
              "blob": {"path": str(blob)}, "tree": {"path": str(tree), "digest": "1" * 64}}
    first = request(tmp_path / "a", step="copy", action="a", config={"import": "raypkg.mod"}, inputs=inputs,
                    outputs=["sources.json", "blob", "tree"])
    second = request(tmp_path / "b", step="copy", action="b", inputs=inputs, outputs=["sources.json", "blob", "tree"])
    ray = RayExecutor(1, FAKE, workspace, cluster)
    try:
        replies = run_all(ray, [first])
        put = len(ray.blobs)
        replies.update(run_all(ray, [second]))
        assert len(ray.blobs) == put == 5, "each input is put once per build, by digest"
        node = worker_node(ray)
    finally:
        ray.shutdown()
    a, b = replies["a"], replies["b"]
    assert a.ok and b.ok, (a.error, b.error)
    assert a.metrics["node"] == node
    assert a.metrics["pid"] == b.metrics["pid"], "one actor runs both"
    # The actor reads the sources from a workspace of its own, never from the test's.
    actor_ws = Path(a.metrics["workspace"])
    assert actor_ws != workspace and "modelbuild-ray-" in str(actor_ws)
    assert not actor_ws.exists(), "its scratch is gone with it"
    assert Path(a.metrics["module_file"]) == actor_ws / "raypkg" / "mod.py"
    for out in (tmp_path / "a", tmp_path / "b"):
        assert json.loads((out / "sources.json").read_text()) == {
            "raypkg/mod.py": "VALUE = 42\n", "raypkg/data/table.txt": "a table\n", outside: "a key\n"}
        assert (out / "blob").read_bytes() == blob.read_bytes() and os.access(out / "blob", os.X_OK)
        assert sorted(p.relative_to(out / "tree").as_posix() for p in (out / "tree").rglob("*")) == [
            "Data", "Data/weights", "Data/weights/weight.bin", "Manifest.json", "empty"]
        assert (out / "tree" / "Data" / "weights" / "weight.bin").read_bytes() == bytes(range(256)) * 100
        assert not (out / "tree" / "Manifest.json").stat().st_mode & stat.S_IXUSR
        assert (out / "log").read_text().startswith("copy in pid ")


def test_stale_source_and_step_errors_name_the_engines_paths(cluster, workspace, tmp_path):
    stale = request(tmp_path / "s", step="copy", action="stale",
                    inputs={"src": {"sources": [("raypkg/mod.py", "0" * 64)]}})
    blob = tmp_path / "in.bin"
    blob.write_bytes(b"x")
    fail = request(tmp_path / "f", step="fail", action="fail", inputs={"blob": {"path": str(blob)}})
    ray = RayExecutor(1, FAKE, workspace, cluster)
    try:
        replies = run_all(ray, [stale, fail])
    finally:
        ray.shutdown()
    assert not replies["stale"].ok and replies["stale"].transient
    assert "source raypkg/mod.py changed during the build" in replies["stale"].error
    assert replies["fail"].error == f"failed reading {blob} into {tmp_path / 'f'}"


def test_a_killed_actor_fails_only_its_action(cluster, workspace, tmp_path):
    ray = RayExecutor(1, FAKE, workspace, cluster)
    try:
        before = run_all(ray, [request(tmp_path / "1", step="copy", action="before")])["before"]
        died = run_all(ray, [request(tmp_path / "2", step="die", action="die")])["die"]
        after = run_all(ray, [request(tmp_path / "3", step="copy", action="after")])["after"]
    finally:
        ray.shutdown()
    assert not died.ok and died.crashed and died.transient
    assert died.error.startswith("ray actor on node ") and f"(pid {before.metrics['pid']}) died: " in died.error, died.error
    assert after.ok and after.metrics["pid"] != before.metrics["pid"], "a new actor runs the next action"


# One build's driver in a process of its own, so that what ray.init does to a process (token mode,
# Ray Client mode) stays there: argv is the address ("" for a local instance), the workspace and this folder.
DRIVER = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from buildsys.errors import UserError
from buildsys.exec.ray import RayExecutor
from test_ray_executor import request, run_all, _children
before = _children()
try:
    ray = RayExecutor(1, "ray_fake_runner", Path(sys.argv[2]), sys.argv[1] or None)
except UserError as err:
    print(json.dumps({"user_error": str(err)}))
    sys.exit(0)
try:
    reply = run_all(ray, [request(Path(sys.argv[2]) / "driven", step="copy", action="t")], timeout=60)["t"]
finally:
    ray.shutdown()
print(json.dumps({"ok": reply.ok, "error": reply.error, "left": sorted(_children() - before)}))
"""


def drive(address: str, workspace: Path, home: Path, **env: str) -> dict:
    """Run DRIVER with a HOME of its own (and TMPDIR beside it) and no Ray settings but those given."""
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    proc = subprocess.run([sys.executable, "-c", DRIVER, address, str(workspace), str(HERE)],
                          env={**clean, "HOME": str(home), "TMPDIR": str(home / "tmp"), "PYTHONPATH": IMPORTS, **env},
                          cwd=HERE.parents[1], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def short_home() -> Path:
    """A private home under /tmp: a local Ray instance's sockets live in its TMPDIR and must fit in 107 bytes."""
    return Path(tempfile.mkdtemp(prefix="rh-", dir="/tmp"))


def test_a_token_auth_engine_without_a_token_is_told_where_to_put_one(cluster, workspace):
    """RAY_AUTH_MODE=token and no token anywhere (an empty home): Ray refuses to connect. The error
    says where a token goes, and that a cluster without auth needs RAY_AUTH_MODE unset."""
    home = short_home()
    try:
        said = drive(cluster, workspace, home, RAY_AUTH_MODE="token")
        assert not (home / ".ray").exists(), "nothing was written for the user"
    finally:
        shutil.rmtree(home, ignore_errors=True)
    error = said.get("user_error", "")
    assert error.startswith(f"cannot connect to the Ray cluster at {cluster}: RAY_AUTH_MODE=token is set here, "
                            "but this engine has no token"), said
    assert "$RAY_AUTH_TOKEN_PATH" in error and "unset RAY_AUTH_MODE" in error, error


def test_a_token_auth_engine_on_a_cluster_without_auth_is_told_why(cluster, workspace):
    """An engine with RAY_AUTH_MODE=token and a token (its own file, by RAY_AUTH_TOKEN_PATH) connects to a
    cluster without auth, but its actors die before they start: the error says what to change."""
    home = short_home()
    try:
        (home / "token").write_text("0" * 64)
        said = drive(cluster, workspace, home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(home / "token"))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert said.get("ok") is False, said
    assert "never started" in said["error"] and "RAY_AUTH_MODE=token" in said["error"], said


def sleeps(out: Path, n: int, seconds: float) -> list:
    return [request(out / str(i), step="sleep", action=f"sleep{i}", config={"seconds": seconds}) for i in range(n)]


def test_jobs_bounds_the_actions_running_at_once(cluster, workspace, tmp_path):
    one = RayExecutor(1, FAKE, workspace, cluster)
    try:
        assert one.free() == 1
        one.submit(sleeps(tmp_path / "x", 1, 0.1)[0])
        assert one.free() == 0 and one.running() == 1
        run_all(one, [])
        serial = run_all(one, sleeps(tmp_path / "one", 3, 0.5))
    finally:
        one.shutdown()
    spans = sorted((r.metrics["started"], r.metrics["ended"]) for r in serial.values())
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans
    assert len({r.metrics["pid"] for r in serial.values()}) == 1

    two = RayExecutor(2, FAKE, workspace, cluster)
    try:
        two.warm(2)
        parallel = run_all(two, sleeps(tmp_path / "two", 2, 1.5))
    finally:
        two.shutdown()
    (s1, e1), (s2, e2) = sorted((r.metrics["started"], r.metrics["ended"]) for r in parallel.values())
    assert s2 < e1, "with jobs=2 two actions overlap"


def test_an_unreachable_cluster_is_a_user_error(workspace):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    started = time.monotonic()
    with pytest.raises(UserError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}.*ray status"):
        RayExecutor(1, FAKE, workspace, f"127.0.0.1:{port}")
    assert time.monotonic() - started < 10


def test_without_an_address_a_local_ray_instance_runs_and_stops(workspace):
    """A Ray instance of the build's own: it runs the action, stops with the executor, and leaves
    nothing behind, neither a token in ~/.ray nor a session in its temp dir (its own process, so the
    token mode it turns on stays there)."""
    home = short_home()
    try:
        said = drive("", workspace, home)
        left = sorted(p.relative_to(home).as_posix() for p in home.rglob("*"))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert said.get("ok") is True, said
    assert said["left"] == [], "the local Ray instance stopped with the executor"
    assert left == ["tmp"], f"the build left {left} in its home and temp dir"


def test_a_failed_ray_client_connection_leaves_the_process_ready_for_the_next_build(cluster, workspace, tmp_path):
    """A ray:// connection that times out (a listener that is not Ray Client) is a user error with a
    reason, and leaves no Ray Client state behind: the next executor in this process connects and runs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(UserError) as err:
            RayExecutor(1, FAKE, workspace, f"ray://127.0.0.1:{port}")
    assert str(err.value).startswith(f"cannot connect to the Ray cluster at ray://127.0.0.1:{port}: ")
    assert str(err.value).split(f"{port}: ", 1)[1].strip(), "the reason is never empty"
    ray = RayExecutor(1, FAKE, workspace, cluster)
    try:
        reply = run_all(ray, [request(tmp_path / "next", step="copy", action="next")])["next"]
    finally:
        ray.shutdown()
    assert reply.ok, reply.error


def _children() -> set[int]:
    """Live descendants of this process (Ray's local instance runs as its children)."""
    me, found = os.getpid(), set()
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    frontier = {me}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


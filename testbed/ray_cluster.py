"""A real Ray cluster on 127.0.0.1 for tests: a head with no CPUs and one worker node, so every
actor lands on the worker node, each node a separate `ray start` with its own working directory.

Each node runs `ray start --block` in a session of its own; stopping it stops the node's
processes, and whatever is left of the session is killed. `ray stop` is never used: it would
stop every Ray process on the machine, other builds' and other users' included.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

RAY = Path(sys.executable).parent / "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _without_ray_auth(env) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith("RAY_AUTH_")}


class _Node:
    def __init__(self, directory: Path, args: list[str], env: dict[str, str]):
        (directory / "home").mkdir(parents=True)
        (directory / "tmp").mkdir()
        self.log = directory / "ray-start.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(RAY), "start", "--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
                 "--object-store-memory=200000000", f"--temp-dir={directory / 't'}", *args],
                cwd=directory, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                # A node of its own: a home and a temp dir of its own (nothing read from or left in the
                # real ones), and no token auth whatever a token file anywhere says.
                env={**_without_ray_auth(os.environ), "HOME": str(directory / "home"), "TMPDIR": str(directory / "tmp"),
                     "RAY_AUTH_MODE": "disabled", **env},
                start_new_session=True,
            )

    def wait_started(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while b"Ray runtime started" not in self.log.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start failed:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # `ray start --block` stops its node's processes on SIGTERM
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # whatever of its session is left
        except ProcessLookupError:
            pass
        self.process.wait()


@contextmanager
def ray_cluster(worker_cpus: int = 2, worker_env: dict[str, str] | None = None, client_port: int | None = None):
    """Yield the head's address ("127.0.0.1:PORT"); the cluster is stopped on exit. With client_port,
    the head also serves Ray Client (ray://127.0.0.1:client_port) there."""
    # Short: Ray's socket paths live under the temp dir and must fit in 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))
    address = f"127.0.0.1:{_free_port()}"
    nodes: list[_Node] = []
    try:
        client = [f"--ray-client-server-port={client_port}"] if client_port else []
        nodes.append(_Node(root / "head", ["--head", f"--port={address.split(':')[1]}", "--num-cpus=0",
                                           "--include-dashboard=false", *client], {}))
        nodes[-1].wait_started()
        nodes.append(_Node(root / "worker", [f"--address={address}", f"--num-cpus={worker_cpus}"], worker_env or {}))
        nodes[-1].wait_started()
        yield address
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(root, ignore_errors=True)

"""The Ray executor: actions run in Ray actors, on any node of a cluster, with no shared file system.

Each actor is a long-lived worker like a local one: it imports the rule set's runner once and
runs one action at a time. What a step reads and writes travels streamed (ray_transport.py):
through the remote cache's CAS when the build has one that takes uploads, else through Ray's
object store in chunks. The engine sends each input (a workspace source, an earlier action's
output) once per build, keyed by its content digest; the actor writes it into its own scratch
directory, runs the step there and sends back the outputs and the log, which the engine writes
where the request named them. So a node needs the rule set installed, not the workspace or the cache.

Only this module imports ray, and the engine imports this module only for `--executor ray`.
"""
from __future__ import annotations

import importlib
import logging
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..cache.remote import RemoteCache
from ..errors import UserError
from ..rule_api.wire import SourceFile, SourcesInput, StepReply, StepRequest
from .ray_transport import Changed, NotShared, Transport, digest_of

class BadSource(Exception):
    pass


_SCRATCH_PREFIX = "modelbuild-ray-"


def _prune_dead_scratch() -> None:
    """Remove the scratch directories of actors on this node that died without cleaning up
    (a SIGKILL, the OOM killer, ray.kill): their names carry their pid."""
    for path in Path(tempfile.gettempdir()).glob(_SCRATCH_PREFIX + "*"):
        try:
            os.kill(int(path.name[len(_SCRATCH_PREFIX):].split("-")[0]), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, PermissionError):
            pass  # not one of ours, or another user's live process


class StepActor:
    """One Ray worker process (wrapped by ray.remote in RayExecutor): its own scratch directory
    holds the workspace sources it has been sent, and one directory per running action."""

    def __init__(self, runner: str, engine_workspace: str, remote: tuple[str, dict] | None = None):
        os.environ.setdefault("TQDM_DISABLE", "1")
        # With a remote cache, inputs and outputs travel through its CAS, else the object store (ray_transport.py).
        import ray

        self.transport = Transport(ray, RemoteCache(remote[0], headers=remote[1]) if remote else None)
        _prune_dead_scratch()
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{os.getpid()}-"))
        # The workspace at its engine path under a root of its own, so a source outside the workspace
        # (a signing key, named "../../keys/release.key") lands inside the scratch directory too.
        self.root = self.scratch / "root"
        self.workspace = self.root / engine_workspace.lstrip("/")
        self.workspace.mkdir(parents=True)
        self.have: dict[str, str] = {}  # workspace-relative path -> digest of what is written there
        self.engine_workspace = engine_workspace  # errors name paths as the engine sees them
        sys.path.insert(0, str(self.workspace))  # model modules import from the workspace, as in a local worker
        self.runner = importlib.import_module(runner)
        self.runner.preload()

    def where(self) -> tuple[str, int]:
        import ray

        return ray.util.get_node_ip_address(), os.getpid()

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _source(self, source: SourceFile, handle) -> None:
        if self.have.get(source.path) == source.digest:
            return
        dest = Path(os.path.normpath(self.workspace / source.path))
        if not dest.is_relative_to(self.root):
            raise BadSource(f"source {source.path} is not a path relative to the workspace")
        found = digest_of(handle)
        if found != source.digest:  # what the engine read when it sent it
            raise BadSource(f"source {source.path} changed during the build (its sha256 is {found}, the plan "
                            f"has {source.digest}); build again")
        self.transport.receive(handle, dest)
        self.have[source.path] = source.digest

    def run(self, wire: dict, blobs: dict) -> tuple[dict, dict, bytes]:
        """Run one request: (its reply, its outputs' handles by name, its log's bytes). `blobs` maps
        digests to handles, whose object refs are nested so that Ray hands them over unfetched: a
        source this actor already has is not fetched again."""
        request = StepRequest.model_validate(wire)
        action_dir = Path(tempfile.mkdtemp(prefix="action-", dir=self.scratch))
        out, log = action_dir / "out", action_dir / "log"
        out.mkdir()
        log.touch()
        local_paths = {str(out): request.out_dir, str(log): request.log, str(self.workspace): self.engine_workspace,
                       str(self.root): ""}
        try:
            try:
                inputs = {}
                for name, value in request.inputs.items():
                    if isinstance(value, SourcesInput):
                        for source in value.sources:
                            self._source(source, blobs[source.digest])
                        inputs[name] = value
                    else:  # keep the file's name: a step may read its suffix (an .mlpackage)
                        local = action_dir / "inputs" / name / Path(value.path).name
                        self.transport.receive(blobs[value.digest], local)
                        inputs[name] = value.model_copy(update={"path": str(local)})
                        local_paths[str(local)] = value.path
                local = request.model_copy(update={"inputs": inputs, "out_dir": str(out), "log": str(log)})
                started = time.perf_counter()
                reply = self.runner.run(local, self.workspace)
                reply.seconds = time.perf_counter() - started
            except (BadSource, NotShared, Changed) as err:  # the workspace or the transport, not the inputs: never recorded
                reply = StepReply(ok=False, error=str(err), show_log=False, transient=True)
            if reply.error:  # name paths as the engine sees them
                for mine, theirs in sorted(local_paths.items(), key=lambda kv: -len(kv[0])):
                    reply.error = reply.error.replace(mine, theirs)
            outputs = {name: self.transport.send(out / name) for name in request.outputs if (out / name).exists()}
            return reply.to_wire(), outputs, log.read_bytes()
        finally:
            shutil.rmtree(action_dir, ignore_errors=True)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray, which is not installed: pip install 'modelbuild[ray]'") from None
    return ray


def _check_reachable(address: str) -> None:
    """ray.init retries an unreachable address for minutes, printing warnings; a plain TCP
    connection to the head says at once whether anything listens there."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and other forms Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise UserError(f"cannot reach the Ray cluster at {address} ({err.strerror or err}): check that its head "
                        f"node is running (`ray status --address {address}`) and that port {port} on {host} is open "
                        "from this machine") from None


@dataclass
class _Actor:
    handle: object
    where: object  # object ref of (node ip, pid), ready once the runner is imported


class RayExecutor:
    def __init__(self, jobs: int, runner: str, workspace: Path, address: str | None = None,
                 remote: tuple[str, dict] | None = None):
        """remote: (URL, headers) of a remote cache that takes uploads: inputs and outputs travel
        through its CAS, the object store carrying only what it could not take."""
        self.ray = ray = _import_ray()
        self.remote_spec = remote
        self.remote = RemoteCache(remote[0], headers=remote[1]) if remote else None
        self.transport = Transport(self.ray, self.remote)
        self.jobs = jobs
        self.runner = runner
        self.workspace = Path(workspace)
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        # Said before ray.init, which turns it on in this process for a local instance of its own.
        self.token_auth = self.address is not None and os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
        quiet = dict(logging_level=logging.ERROR, log_to_driver=False)  # workers' import noise stays off the console
        self.own_temp: str | None = None  # the temp dir of a Ray instance of our own, removed at shutdown
        try:
            if self.address is None:  # a Ray instance of our own, for this build only ("local": never join another)
                self._start_local(ray, jobs, quiet)
            else:
                self._connect(ray, quiet)
        except BaseException:
            self._abandon()  # a half-made connection (Ray Client's above all) would break the next ray.init here
            raise
        self.actor_class = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(StepActor)
        self.idle: list[_Actor] = []
        self.pending: dict[object, tuple[_Actor, StepRequest]] = {}  # object ref of the result -> who, what
        self.finished: list[tuple[str, StepReply]] = []  # failed before they reached an actor
        self.blobs: dict[str, tuple] = {}  # content digest -> its transport handle, sent once per build
        self.closed = False

    def _start_local(self, ray, jobs: int, quiet: dict) -> None:
        # Ray's sessions go to a temp dir of this build's, not /tmp/ray, and go with it. Its socket paths
        # ("<dir>/session_<date>_<pid>/sockets/plasma_store", about 80 bytes past the base) must fit in
        # 107 bytes: a long $TMPDIR (macOS's, a test's) gives way to /tmp.
        base = tempfile.gettempdir()
        self.own_temp = tempfile.mkdtemp(prefix="mbray-", dir=base if len(base) <= 24 else "/tmp")
        # A new local Ray turns on token auth and, with no token given, writes one to ~/.ray/auth_token.
        # An instance that lives for one build needs no token kept anywhere: it gets one in this
        # process's environment, which its own processes inherit.
        if not {"RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(os.environ):
            os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
        try:
            ray.init(address="local", num_cpus=jobs, include_dashboard=False, _temp_dir=self.own_temp, **quiet)
        except Exception as err:
            raise UserError(f"cannot start a local Ray instance: {_reason(err)} (Ray's logs: "
                            f"{self.own_temp}/session_latest/logs)") from None

    def _connect(self, ray, quiet: dict) -> None:
        _check_reachable(self.address)
        for attempt in range(1, _CLIENT_TRIES + 1):
            try:
                ray.init(address=self.address, **quiet)
                break
            except ray.exceptions.AuthenticationError as err:  # this side's token: none, or not the cluster's
                raise UserError(f"cannot connect to the Ray cluster at {self.address}: {_token_advice(err)}") from None
            except Exception as err:  # Ray raises ConnectionError, RuntimeError (version mismatch), ...
                if attempt < _CLIENT_TRIES and any(sign in str(err) for sign in _CLIENT_SERVER_FAILED):
                    ray.shutdown()  # a clean client state for the next try
                    continue
                raise UserError(f"cannot connect to the Ray cluster at {self.address}: {_reason(err)}") from None
        if ray.cluster_resources().get("CPU", 0) < 1:
            raise UserError(f"the Ray cluster at {self.address} has no CPUs for workers (`ray status` shows "
                            "its resources); start nodes with --num-cpus of at least 1")

    def _abandon(self) -> None:
        """Undo a Ray start or connection that failed half way: its client state, its temp dir."""
        try:
            self.ray.shutdown()  # also leaves Ray Client mode, which a failed ray:// connect keeps on
        except Exception:
            pass
        if self.own_temp:
            shutil.rmtree(self.own_temp, ignore_errors=True)

    def starts_now(self, step: str) -> bool:
        return True  # every actor runs every step

    def free(self) -> int:
        return self.jobs - self.running()

    def running(self) -> int:
        return len(self.pending) + len(self.finished)

    def _new_actor(self) -> _Actor:
        handle = self.actor_class.remote(self.runner, str(self.workspace.absolute()), self.remote_spec)
        return _Actor(handle, handle.where.remote())

    def warm(self, wanted: int) -> None:
        for _ in range(min(wanted, self.jobs - len(self.pending) - len(self.idle))):
            self.idle.append(self._new_actor())

    def _blob(self, digest: str, path: Path) -> tuple:
        if digest not in self.blobs:
            self.blobs[digest] = self.transport.send(path)
        return self.blobs[digest]

    def submit(self, request: StepRequest) -> None:
        assert self.free() > 0, "submit() with no free worker"
        try:
            blobs = {}
            for value in request.inputs.values():
                if isinstance(value, SourcesInput):
                    for source in value.sources:
                        blobs[source.digest] = self._blob(source.digest, self.workspace / source.path)
                else:
                    blobs[value.digest] = self._blob(value.digest, Path(value.path))
        except OSError as err:  # a source removed mid-build: the machine's state, not the inputs'
            self.finished.append((request.action, StepReply(ok=False, error=f"cannot read an input: {err}",
                                                            show_log=False, transient=True)))
            return
        actor = self.idle.pop() if self.idle else self._new_actor()
        self.pending[actor.handle.run.remote(request.to_wire(), blobs)] = (actor, request)

    def wait(self, timeout: float | None) -> list[tuple[str, StepReply]]:
        done, self.finished = self.finished, []
        if not self.pending or done:
            return done
        refs = list(self.pending)
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)  # Ctrl-C interrupts it
        if ready:  # and whatever else has finished by now
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            actor, request = self.pending.pop(ref)
            done.append((request.action, self._collect(ref, actor, request)))
        return done

    def _collect(self, ref, actor: _Actor, request: StepRequest) -> StepReply:
        errors = self.ray.exceptions
        try:
            wire, outputs, log = self.ray.get(ref)
        except errors.RayTaskError as err:  # raised by the actor's own code, around the step
            self._discard(actor)
            return StepReply(ok=False, error=f"ray actor failed around the step: {err}", transient=True)
        except errors.RayError as err:  # the actor or its node died: a crash, the OOM killer, a lost node
            self._discard(actor)
            if getattr(err, "actor_init_failed", False):
                return StepReply.died(f"ray actor could not start (runner {self.runner}): {_why(err)}")
            why = _why(err)
            if self.token_auth and why.endswith("(the actor never started)"):
                why += (". This engine runs with RAY_AUTH_MODE=token, and a cluster started without token authentication "
                        "cannot call back to it: unset RAY_AUTH_MODE here, or start the cluster's nodes with it")
            return StepReply.died(f"ray actor on {self._node(actor)} died: {why}")
        self.idle.append(actor)
        try:
            for name, handle in outputs.items():
                self.transport.receive(handle, Path(request.out_dir) / name)
            with open(request.log, "ab") as f:
                f.write(log)
        except (OSError, NotShared, Changed) as err:
            return StepReply(ok=False, error=f"cannot write the outputs of {request.action}: {err}", transient=True)
        return StepReply.model_validate(wire)

    def _node(self, actor: _Actor) -> str:
        try:
            ip, pid = self.ray.get(actor.where, timeout=0)
            return f"node {ip} (pid {pid})"
        except Exception:  # it died before it was ready
            return "an unknown node"

    def _discard(self, actor: _Actor) -> None:
        """Forget an actor whose action failed or died; the next submit makes a new one."""
        self.ray.kill(actor.handle)

    def shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        ray = self.ray
        # Idle, started actors remove their scratch directories; busy ones are abandoned (the build
        # was interrupted), as are those still importing the toolchain: their directories go when
        # the next actor on that node starts.
        started = set(ray.wait([a.where for a in self.idle], num_returns=len(self.idle), timeout=0)[0]) if self.idle else set()
        closing = [a.handle.close.remote() for a in self.idle if a.where in started]
        try:
            if closing:
                ray.wait(closing, num_returns=len(closing), timeout=5)
        finally:
            for actor in [*self.idle, *(a for a, _ in self.pending.values())]:
                ray.kill(actor.handle)
            self.idle, self.pending, self.blobs = [], {}, {}
            if self.remote is not None:
                self.remote.close()
            ray.shutdown()  # disconnects; stops the Ray instance only if this executor started it
            if self.own_temp:
                shutil.rmtree(self.own_temp, ignore_errors=True)


# The lines of Ray's ActorDiedError that describe the actor rather than what happened to it.
_RAY_ACTOR_FIELDS = ("class_name:", "actor_id:", "pid:", "name:", "namespace:", "ip:", "The actor died unexpectedly",
                     "The actor experienced an error", "The actor never ran")


def _token_advice(err: Exception) -> str:
    where = ("$RAY_AUTH_TOKEN, the file $RAY_AUTH_TOKEN_PATH names, or ~/.ray/auth_token; `ray get-auth-token` "
             "on the head prints the cluster's")
    if "no authentication token was found" in str(err):
        return ("RAY_AUTH_MODE=token is set here, but this engine has no token. Give it the cluster's token "
                f"({where}), or unset RAY_AUTH_MODE if the cluster runs without token authentication")
    return f"the cluster refused this engine's token ({_reason(err)}). Give it the cluster's token ({where})"


# The head's Ray Client proxy starts a server process per client, and now and then that process dies
# at once, with no output (the proxy forks it while gRPC threads run: its log says "skipping fork()
# handlers"). The connect then fails with one of these in the proxy's traceback; a new try gets a new
# server process on another port.
_CLIENT_SERVER_FAILED = ("Starting Ray client server failed", "in start_specific_server")
_CLIENT_TRIES = 3


def _reason(err: BaseException) -> str:
    """What an exception says, never nothing: Ray raises some with an empty message."""
    said = " ".join(str(err).split())
    return said if said else f"{type(err).__name__}, with no message from Ray"


def _why(err: Exception) -> str:
    """What Ray says happened, without its paragraph of common causes or the actor's ids."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    said = " ".join(line for line in lines if not line.startswith(_RAY_ACTOR_FIELDS)) or type(err).__name__
    why = said.split(" Some common causes")[0]
    if any(line.startswith("The actor never ran") for line in lines):
        why += " (the actor never started)"
    return why

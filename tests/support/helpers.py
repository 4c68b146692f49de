"""Shared helpers: copy the example workspace, run the real CLI in a subprocess, read events."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from example import REPO, copy_example  # noqa: F401  (the tests' shared name for it)
def run_cli(workspace: Path, *args: str, timeout: float = 900, env: dict | None = None,
            umask: int | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "MODELBUILD_CACHE_DIR"}
    full_env.update(COLUMNS="200", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "modelbuild", *args],
        cwd=workspace, capture_output=True, text=True, timeout=timeout, env=full_env,
        umask=-1 if umask is None else umask,  # not preexec_fn: no Python code between fork and exec
    )


def build(workspace: Path, *patterns: str, events: str = "events.jsonl", extra: tuple = ()) -> tuple[subprocess.CompletedProcess, list[dict]]:
    path = workspace / events
    proc = run_cli(workspace, "build", *(patterns or ("//...",)), "--build-events", str(path), *extra)
    return proc, read_events(path)


def read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def by_status(events: list[dict], status: str) -> set[tuple[str, str]]:
    """(step, label) of the actions with this status."""
    return {(e["step"], e["label"]) for e in events if e["status"] == status}


def action_results(workspace: Path, events: list[dict]) -> dict:
    """(step, label) -> the ActionResult in the cache, for every action that ran or was cached."""
    from buildsys.cache.action_cache import ActionCache

    cache = ActionCache(workspace / "cache" / "ac")
    try:
        return {(e["step"], label): cache.get(e["action_key"])
                for e in events if e["status"] in ("ran", "cached") for label in e["labels"]}
    finally:
        cache.close()


def step_request(fields: dict):
    """A StepRequest as the scheduler sends it, from the fields a test cares about: file inputs get
    their real digest (a program loads only if its bytes match), the rest get neutral defaults."""
    from buildsys.digests import digest_file
    from buildsys.rule_api.wire import FileInput, SourceFile, SourcesInput, StepRequest

    def typed(value: dict):
        if "sources" in value:
            return SourcesInput(sources=[SourceFile(path=p, digest=d) for p, d in value["sources"]])
        path = Path(value["path"])
        digest = value.get("digest") or (digest_file(path) if path.is_file() else "0" * 64)
        return FileInput(path=str(path), digest=digest, is_tree=path.is_dir())

    module = fields.get("module", "rules.test")
    return StepRequest(**{"action": "test", "step": module.rsplit(".", 1)[-1], "module": module, "label": "//:t",
                          **fields, "inputs": {n: typed(v) for n, v in fields["inputs"].items()}})


def declared_outputs(module: str, output: str) -> list[str]:
    """What a step's action declares besides the output a test reads: an export (or a quantize)
    also records the eager outputs its checks compare against."""
    recorded = ["outputs.safetensors"] if module in ("rules.steps.export", "rules.steps.quantize") else []
    return [output, *recorded]


def run_step_request(fields: dict, workspace: Path) -> dict:
    """Run one step as a worker does (rules.worker.run); its reply as the dict that crosses the wire."""
    from rules.worker import run

    return run(step_request(fields), workspace).to_wire()


def keypair(tmp: Path, name: str) -> tuple[Path, Path]:
    """A fresh ed25519 key pair as PEM files: (private, public)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private, public = tmp / f"{name}.key", tmp / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def workers(ws: Path, server: bool = True) -> list[int]:
    """Live (not zombie) processes of this workspace's local workers: the fork server they come from
    (found by its command line, which names the workspace on its path) and everything under it (the
    workers, their guardians, what their steps started); without server, all but the server."""
    table = {}  # pid -> (parent pid, command line)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes()
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            table[int(entry)] = (int(fields[1]), argv)
    # Forked workers keep the server's command line: the server is the one whose parent is not one.
    named = {pid for pid, (_, argv) in table.items() if b"multiprocessing.forkserver" in argv and str(ws).encode() in argv}
    servers = {pid for pid in named if table[pid][0] not in named}
    found, frontier = set(servers), set(servers)
    while frontier:
        frontier = {pid for pid, (parent, _) in table.items() if parent in frontier} - found
        found |= frontier
    return sorted(found if server else found - servers)

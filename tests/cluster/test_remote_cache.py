"""The remote cache end to end: real builds through the CLI against a real WebDAV server (WsgiDAV on
127.0.0.1, and nginx as Bazel's docs configure it) speaking Bazel's HTTP cache layout. Machine A builds and uploads; other machines are fresh
copies of the workspace with empty local caches."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dav_server import DavServer
from helpers import REPO, build, by_status, keypair, read_events
from nginx_server import NGINX, NginxDav

TARGETS = ("//:mlp_pt2",)  # export and verify: two actions, a .pt2 program blob, a report blob
SOURCE = REPO / "tests" / "workspaces" / "release"


def fresh_copy(path: Path) -> Path:
    shutil.copytree(SOURCE, path, ignore=shutil.ignore_patterns("__pycache__", "cache", "out"))
    return path


def out_files(ws: Path) -> dict[str, bytes]:
    return {p.relative_to(ws / "out").as_posix(): p.read_bytes() for p in (ws / "out").rglob("*") if p.is_file()}


def server_files(server: DavServer) -> dict[str, bytes]:
    return {p.relative_to(server.root).as_posix(): p.read_bytes() for p in server.root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def machine_a(tmp_path_factory):
    """A server, and machine A's build of TARGETS with uploads on."""
    base = tmp_path_factory.mktemp("remote")
    with DavServer(base / "server") as server:
        ws = fresh_copy(base / "a")
        proc, events = build(ws, *TARGETS, extra=("-j", "1", "--remote-cache", server.url))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield server, ws, proc, events


def test_machine_a_uploads_what_it_ran(machine_a):
    server, ws, proc, events = machine_a
    ran = by_status(events, "ran")
    assert len(ran) == 2
    files = server_files(server)
    assert len([f for f in files if f.startswith("ac/")]) == 2
    assert len([f for f in files if f.startswith("cas/")]) >= 2  # the program, the report (and logs)
    assert f"remote cache {server.url}: 0 hits" in proc.stdout and "uploaded (2 results)" in proc.stdout


def test_a_fresh_read_only_machine_runs_nothing_and_gets_identical_outputs(machine_a, tmp_path):
    server, a, _, _ = machine_a
    before = server_files(server)
    b = fresh_copy(tmp_path / "b")
    proc, events = build(b, *TARGETS, extra=("-j", "1", "--remote-cache", server.url, "--no-remote-upload"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert by_status(events, "ran") == set() and len(by_status(events, "cached")) == 2
    assert out_files(b) == out_files(a)
    assert "2 hits" in proc.stdout and "0 B uploaded" in proc.stdout
    assert server_files(server) == before  # a read-only client uploads nothing
    # What came from the remote is now in the local cache: the next build needs no server.
    proc, events = build(b, *TARGETS, extra=("-j", "1"))
    assert proc.returncode == 0 and by_status(events, "ran") == set()


def test_a_tampered_blob_on_the_server_is_rejected_and_rebuilt(machine_a, tmp_path):
    server, a, _, _ = machine_a
    program = (a / "out" / "mlp_pt2.pt2").read_bytes()
    import hashlib

    blob = server.root / "cas" / hashlib.sha256(program).hexdigest()
    assert blob.is_file()
    blob.write_bytes(program[:-64] + b"\0" * 64)  # same size, other bytes
    try:
        c = fresh_copy(tmp_path / "c")
        proc, events = build(c, *TARGETS, extra=("-j", "1", "--remote-cache", server.url))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert {step for step, _ in by_status(events, "ran")} == {"export"}  # verify's record still hits
        assert out_files(c) == out_files(a)  # never the tampered bytes
        assert "1 rejected" in proc.stdout and "rejected" in proc.stdout.split("WARNING:", 1)[1]
        assert blob.read_bytes() == program  # the good copy it made replaced the bad one on the server
    finally:
        blob.write_bytes(program)


def test_with_a_key_unsigned_records_are_misses_and_signed_ones_hits(machine_a, tmp_path):
    server_a, a, _, _ = machine_a
    private, public = keypair(tmp_path, "ci")
    # A server of its own holding machine A's unsigned records and blobs.
    with DavServer(tmp_path / "server") as server:
        shutil.rmtree(server.root)
        shutil.copytree(server_a.root, server.root)
        d = fresh_copy(tmp_path / "d")  # CI with the private key: refuses the unsigned records, uploads signed ones
        proc, events = build(d, *TARGETS, extra=("-j", "1", "--remote-cache", server.url, "--remote-cache-key",
                                                 str(private)))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert len(by_status(events, "ran")) == 2
        assert "2 rejected" in proc.stdout and "unsigned" in proc.stdout
        e = fresh_copy(tmp_path / "e")  # a developer with the public key: the signed records are hits
        proc, events = build(e, *TARGETS, extra=("-j", "1", "--remote-cache", server.url, "--remote-cache-key",
                                                 str(public), "--no-remote-upload"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert by_status(events, "ran") == set()
        assert out_files(e) == out_files(a)


def test_the_server_stopping_mid_build_leaves_a_warning_and_a_good_build(tmp_path):
    with DavServer(tmp_path / "server") as server:
        ws = fresh_copy(tmp_path / "ws")
        events_path = ws / "events.jsonl"
        proc = subprocess.Popen([sys.executable, "-m", "modelbuild", "build", *TARGETS, "-j", "1",
                                 "--remote-cache", server.url, "--build-events", str(events_path)],
                                cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 300
        while not read_events(events_path) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the first action (export) has finished (its upload may still be under way)
        # Freeze the engine while the server goes: verify (in its worker) can finish, but its upload
        # cannot slip in before the server is gone, however fast verify is on a busy machine.
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            server.stop()
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert len(by_status(read_events(events_path), "ran")) == 2
    warnings = [line for line in output.splitlines() if "WARNING:" in line and "remote cache" in line]
    assert len(warnings) == 1 and "building without it from here on" in warnings[0], output
    assert (ws / "out" / "mlp_pt2.pt2").is_file()


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/run installs nginx-core where it can)")
def test_nginx_as_bazel_configures_it_serves_the_cache_unchanged(tmp_path):
    with NginxDav(tmp_path / "nginx") as server:
        a = fresh_copy(tmp_path / "a")
        proc, events = build(a, *TARGETS, extra=("-j", "1", "--remote-cache", server.url))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert len(by_status(events, "ran")) == 2 and "uploaded (2 results)" in proc.stdout, proc.stdout
        assert len(list((server.root / "ac").iterdir())) == 2
        b = fresh_copy(tmp_path / "b")
        proc, events = build(b, *TARGETS, extra=("-j", "1", "--remote-cache", server.url, "--no-remote-upload"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert by_status(events, "ran") == set() and "2 hits" in proc.stdout, proc.stdout
        assert out_files(b) == out_files(a)
        assert "WARNING" not in proc.stdout + proc.stderr


def test_an_interrupted_build_stops_its_uploads_and_leaves_no_record_without_its_blobs(tmp_path):
    """Uploads run beside the build and it waits for them at its end; Ctrl-C (or SIGTERM) then drops what
    is queued at once, and the server never holds a record whose blobs did not make it."""
    with DavServer(tmp_path / "server", rate=1000) as server:  # 1 kB/s: the uploads outlast the build
        ws = fresh_copy(tmp_path / "ws")
        proc = subprocess.Popen([sys.executable, "-m", "modelbuild", "build", *TARGETS, "-j", "1",
                                 "--remote-cache", server.url], cwd=ws, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        seen = ""
        while "uploading to the remote cache" not in seen and (line := proc.stdout.readline()):
            seen += line
        assert "uploading to the remote cache (" in seen, seen
        proc.send_signal(signal.SIGTERM)  # as Ctrl-C (a SIGINT would be ignored under a shell's background job)
        started = time.monotonic()
        output = seen + proc.communicate(timeout=120)[0]
        assert proc.returncode == 130 and time.monotonic() - started < 10, output
        records = [json.loads(p.read_bytes()) for p in (server.root / "ac").iterdir()]
        assert len(records) < 2, "the uploads had not finished"
        for stored in records:
            blobs = [o["digest"] for o in stored["record"]["outputs"].values()]
            assert all((server.root / "cas" / blob).is_file() for blob in blobs)
    assert (ws / "out" / "mlp_pt2.pt2").is_file()  # the build itself was done

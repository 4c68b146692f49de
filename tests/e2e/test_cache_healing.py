"""A damaged cache never needs a person: bad records are misses, an unreadable store is moved aside,
corrupt blobs are rebuilt by their producers in the same build, and a record is only ever served
for the key it was stored under. Each fault, then one build that succeeds with the right bytes."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import diskcache
import pytest
from helpers import build, by_status

WORKSPACE = Path(__file__).parents[1] / "workspaces" / "release"
TARGETS = ("//:mlp_pt2", "//:mlp_xnnpack")


def digests(ws: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((ws / "out").iterdir())}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A built workspace: its out/ digests, its cache and the events that name each action's key."""
    ws = tmp_path_factory.mktemp("healing") / "ws"
    shutil.copytree(WORKSPACE, ws, ignore=shutil.ignore_patterns("__pycache__", "cache", "out"))
    proc, events = build(ws, *TARGETS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ws, digests(ws), events


@pytest.fixture
def ws(reference, tmp_path):
    """A fresh copy of the built workspace, cache included, for one fault."""
    src, _, _ = reference
    dst = tmp_path / "ws"
    shutil.copytree(src, dst, symlinks=True)
    return dst


def key_of(events: list[dict], step: str, label: str) -> str:
    return next(e["action_key"] for e in events if e["step"] == step and label in e["labels"])


def rebuild(ws: Path, reference) -> tuple:
    proc, events = build(ws, *TARGETS, events="after.jsonl")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert digests(ws) == reference[1]
    return proc, events


def corrupt_blob(ws: Path, digest: str) -> None:
    path = ws / "cache" / "cas" / digest[:2] / digest[2:]
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_malformed_records_are_dropped_as_misses(ws, reference):
    events = reference[2]
    partition, export = key_of(events, "partition", "//:mlp_xnnpack"), key_of(events, "export", "//:mlp_pt2")
    with diskcache.Cache(str(ws / "cache" / "ac")) as ac:
        ac.set(partition, "{not json")
        ac.set(export, json.dumps({"key": export, "record": {"step": 3}, "digest": "x"}))  # JSON, but not a record
    proc, after = rebuild(ws, reference)
    assert {s for s, _ in by_status(after, "ran")} == {"partition", "export"}
    assert proc.stdout.count("dropped the action-cache record") == 2, proc.stdout


def test_an_unreadable_store_is_moved_aside_and_started_afresh(ws, reference):
    db = ws / "cache" / "ac" / "cache.db"
    db.write_bytes(b"this is not an SQLite database" * 100)
    proc, _ = rebuild(ws, reference)
    assert "could not be read" in proc.stdout and "a new one started" in proc.stdout, proc.stdout
    assert [p for p in (ws / "cache").iterdir() if p.name.startswith("ac.unreadable-")]


def test_corrupt_artifact_and_intermediate_are_rebuilt_in_the_same_build(ws, reference):
    """The .pte's blob and the exported program it was lowered from are both corrupt, and out/ is
    gone: placing the .pte finds its blob bad, the partition reruns, finds its input bad, the
    export reruns; one build, the right bytes."""
    from buildsys.cache.action_cache import ActionCache

    events = reference[2]
    cache = ActionCache(ws / "cache" / "ac")
    try:
        pte = cache.get(key_of(events, "partition", "//:mlp_xnnpack")).outputs["program.pte"].digest
        program = cache.get(key_of(events, "export", "//:mlp_xnnpack")).outputs["program.pt2"].digest
    finally:
        cache.close()
    corrupt_blob(ws, pte)
    corrupt_blob(ws, program)
    shutil.rmtree(ws / "out")
    proc, after = rebuild(ws, reference)
    assert {(s, l) for s, l in by_status(after, "ran")} >= {("partition", "//:mlp_xnnpack")}
    assert "ran partition (//:mlp_xnnpack) again" in proc.stdout and "ran export" in proc.stdout, proc.stdout
    assert not by_status(after, "failed")


def test_a_record_under_another_key_or_edited_is_not_served(ws, reference):
    """The pt2 artifact's export record copied under the .pte's partition key (well-formed, and it
    would have put the .pt2's bytes at the .pte's path), and a record edited in place: both misses."""
    events = reference[2]
    partition, export = key_of(events, "partition", "//:mlp_xnnpack"), key_of(events, "export", "//:mlp_pt2")
    verify = key_of(events, "verify", "//:mlp_pt2")
    with diskcache.Cache(str(ws / "cache" / "ac")) as ac:
        sealed = json.loads(ac.get(export))
        sealed["record"]["outputs"] = {"program.pte": sealed["record"]["outputs"]["program.pt2"]}
        ac.set(partition, json.dumps(sealed))  # another key's record, outputs renamed to fit
        edited = json.loads(ac.get(verify))
        edited["record"]["metrics"] = {"verification": {"forged": True}}
        ac.set(verify, json.dumps(edited))
    shutil.rmtree(ws / "out")
    proc, after = rebuild(ws, reference)
    assert {(s, l) for s, l in by_status(after, "ran")} >= {("partition", "//:mlp_xnnpack"), ("verify", "//:mlp_pt2")}
    assert proc.stdout.count("stored under another key, or altered") == 2, proc.stdout


class _Planted:
    """Unpickling this makes a directory: proof that a store ran code it read."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def _damage(db: Path, marker: Path) -> int:
    """Garbage into the store's rows, as a stray process or a hostile cache writer could: random bytes
    in some values, a pickle that would run code in others (rows marked as diskcache's pickle mode)."""
    import pickle
    import sqlite3

    con = sqlite3.connect(db)
    try:
        rows = [r for (r,) in con.execute("SELECT rowid FROM Cache ORDER BY rowid")]
        for n, rowid in enumerate(rows[:10]):
            if n % 2:
                con.execute("UPDATE Cache SET mode = 4, value = ? WHERE rowid = ?",
                            (pickle.dumps(_Planted(marker)), rowid))  # 4: diskcache's MODE_PICKLE
            else:
                con.execute("UPDATE Cache SET value = ? WHERE rowid = ?", (os.urandom(24), rowid))
        con.commit()
        return min(len(rows), 10)
    finally:
        con.close()


@pytest.mark.parametrize("store", ["stat", "scan", "ac"])
def test_garbage_in_a_store_costs_a_rebuild_at_most_and_no_store_unpickles(ws, reference, store, tmp_path):
    """Each SQLite store under cache/ (the stat cache of file digests, the import scan, the action cache): garbage and
    planted pickles in its rows are misses with one warning, and the build succeeds with the right
    bytes; nothing planted runs."""
    marker = tmp_path / "planted-code-ran"
    assert _damage(ws / "cache" / store / "cache.db", marker) >= 2
    proc, after = rebuild(ws, reference)
    assert not marker.exists(), "a store unpickled a planted row"
    said = {"stat": "the stat cache had an entry it could not use", "scan": "the import scan cache had an entry it could not use",
            "ac": "dropped the action-cache record"}[store]
    assert said in proc.stdout, proc.stdout
    if store in ("stat", "scan"):
        assert proc.stdout.count(said) == 1, "one warning line, however many entries"
        assert not by_status(after, "ran"), "the files are hashed again; their actions are still cached"
    proc, _ = build(ws, *TARGETS, events="again.jsonl")
    assert proc.returncode == 0 and "WARNING" not in proc.stdout, proc.stdout  # healed: the next build is quiet

"""The bad-input corpus (tests/bad_inputs/corpus.py), each case through the real CLI: the exit
status of a user error (2) or a build failure (1), one message naming file:line or the label,
no Python traceback, and nothing cached lost: every case runs against one shared cache holding a
good target, whose records and blobs must come out unchanged, and which must still be a hit."""
from __future__ import annotations

import hashlib
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import diskcache
import pytest
from bad_inputs.corpus import CASES, CATEGORIES, Case, Link, safetensors
from helpers import read_events, run_cli

DATA = Path(__file__).parents[1] / "bad_inputs"
CACHE_ENV = "MODELBUILD_CACHE_DIR"
BY_NAME = {case.name: case for case in CASES}


def snapshot(cache: Path) -> tuple[dict, dict]:
    """(action-cache records but notes, {blob digest: size}) of a cache."""
    db = diskcache.Cache(str(cache / "ac"))
    try:
        records = {k: db[k] for k in db if not str(k).startswith("note:")}
    finally:
        db.close()
    blobs = {p.parent.name + p.name: p.stat().st_size for p in (cache / "cas").glob("??/*")}
    return records, blobs


def lost(cache: Path, before: tuple[dict, dict]) -> list[str]:
    """What of `before` the cache no longer holds intact."""
    records, blobs = snapshot(cache)
    problems = [f"record {k} changed or gone" for k, v in before[0].items() if records.get(k) != v]
    for digest in before[1]:
        path = cache / "cas" / digest[:2] / digest[2:]
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"blob {digest} changed or gone")
    return problems


def make_case(case: Case, root: Path) -> Path:
    """The case's workspace, root/ws, from the corpus's workspace/ and the case's files."""
    outside = root / "outside"
    (outside / "pkg").mkdir(parents=True)
    (outside / "secret.txt").write_text("not the workspace's\n")
    (outside / "defs.star").write_text("X = 1\n")
    (outside / "w.safetensors").write_bytes(safetensors({"fc.bias": [0, 0]}))
    (outside / "c.npz").write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip
    (outside / "pkg" / "BUILD.models").write_text('model(name = "o", entry = "models.sincos:SinCos", inputs = {"x": tensor([2])})\n')
    ws = root / "ws"
    shutil.copytree(DATA / "workspace", ws, ignore=shutil.ignore_patterns("__pycache__"))
    files = dict(case.files)
    if case.build is not None:
        files["BUILD.models"] = case.build
    for name, content in files.items():
        path = ws / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() or path.is_symlink():
            path.unlink()
        if isinstance(content, Link):
            path.symlink_to(content.target.replace("{outside}", str(outside)))
        elif isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content)
    return ws


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A cache holding the good target //:p, and what it holds."""
    root = tmp_path_factory.mktemp("corpus")
    good = root / "good"
    shutil.copytree(DATA / "workspace", good, ignore=shutil.ignore_patterns("__pycache__"))
    cache = root / "cache"
    proc = run_cli(good, "build", "//...", "-j", "1", env={CACHE_ENV: str(cache)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return good, cache, snapshot(cache)


@pytest.fixture(scope="module")
def outcomes(shared, tmp_path_factory, request):
    """Each selected case run once (three at a time), with what the shared cache lost after it."""
    _, cache, before = shared
    wanted = [BY_NAME[item.callspec.params["case"]] for item in request.session.items
              if getattr(item, "originalname", "") == "test_bad_input"]

    roots = {case.name: tmp_path_factory.mktemp(case.name) for case in wanted}  # not thread-safe

    def run(case: Case):
        ws = make_case(case, roots[case.name])
        env = {CACHE_ENV: str(cache), **{k: v.replace("{workspace}", str(ws)) for k, v in case.env.items()}}
        proc = run_cli(ws, *case.args, *(("-j", "1") if case.args[0] == "build" else ()), env=env, timeout=300)
        return proc, lost(cache, before)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip([c.name for c in wanted], pool.map(run, wanted)))


@pytest.mark.parametrize("case", [c.name for c in CASES])
def test_bad_input(case: str, outcomes):
    spec = BY_NAME[case]
    proc, cache_lost = outcomes[case]
    output = proc.stdout + proc.stderr
    assert proc.returncode == spec.exit, output
    assert "Traceback" not in output, output
    if spec.exit == 2:  # a user error: one ERROR paragraph on stderr, nothing on stdout
        assert proc.stderr.count("ERROR:") == 1 and proc.stdout == "", output
        output = proc.stderr[proc.stderr.index("ERROR:"):]
    assert re.search(spec.where, output), f"where {spec.where!r} not in:\n{output}"
    assert re.search(spec.what, output, re.S), f"what {spec.what!r} not in:\n{output}"
    assert not cache_lost, cache_lost


def test_the_good_target_is_still_a_hit(shared, outcomes):
    good, cache, before = shared
    proc = run_cli(good, "build", "//...", "-j", "1", "--build-events", str(good / "again.jsonl"), env={CACHE_ENV: str(cache)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = read_events(good / "again.jsonl")
    assert events and all(e["status"] == "cached" for e in events), events
    assert not lost(cache, before)


def test_the_corpus_covers_every_kind():
    assert len(CASES) >= 40 and len(BY_NAME) == len(CASES)
    assert set(CATEGORIES) == {c.category for c in CASES}


def test_verbose_goes_before_or_after_the_command_and_a_user_error_stays_one_message(tmp_path: Path):
    """--verbose asks for full action logs; a user error already says where and what, so the
    engine's traceback would only bury it (an internal error keeps its traceback)."""
    (tmp_path / "WORKSPACE.models").write_text("")
    (tmp_path / "BUILD.models").write_text('pt2_program(name = "p", model = ":nope")\n')
    for args in (("--verbose", "query", "//..."), ("query", "//...", "-v"), ("-v", "query")):
        proc = run_cli(tmp_path, *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert proc.stderr.count("ERROR:") == 1 and "BUILD.models:1" in proc.stderr and "'//:nope'" in proc.stderr, proc.stderr

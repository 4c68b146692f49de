"""The no-op's fast path (buildsys/cli/noop.py): it answers only while nothing the last build read has
changed, says what the full path says, and imports and reads a fixed, small set of things, however
many targets there are. Each change a build must see sends the command down the full path."""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_cli

from buildsys.cli.noop import _git_state, snapshot

NETS = Path(__file__).parents[1] / "workspaces" / "release" / "models" / "nets.py"
BUILD = """\
model(name = "mlp", entry = "models.nets:TinyMLP", inputs = {"x": tensor([4, 16])})
pt2_program(name = "mlp_pt2", model = ":mlp")
release(name = "rel", artifacts = [":mlp_pt2"], version = "1.0")
"""
TARGETS = ("//:mlp_pt2", "//:rel")

# Runs the command as `modelbuild` does, and reports which modules it imported and which files it opened.
DRIVER = """
import json, os, sys
opened = []
sys.addaudithook(lambda event, args: opened.append(os.fsdecode(args[0])) if event == "open" and not isinstance(args[0], int) else None)
from modelbuild.__main__ import main
code = main(sys.argv[1:])
sys.stdout.flush()
report = {"code": code, "modules": sorted(sys.modules), "opened": list(opened)}
with open(os.environ["NOOP_REPORT"], "w") as f:
    json.dump(report, f)
"""


def run(ws: Path, *args: str, env: dict | None = None) -> tuple[str, subprocess.CompletedProcess, dict]:
    """("fast" or "full", the process, its report)."""
    report = ws.parent / f"{ws.name}-report.json"
    proc = subprocess.run([sys.executable, "-c", DRIVER, *args], cwd=ws, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "200", "NOOP_REPORT": str(report), **(env or {})})
    assert proc.returncode == 0 and "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    return ("full" if "buildsys.cli.main" in data["modules"] else "fast"), proc, data


def aged(*paths: Path) -> None:
    """Out of the two-second window in which a change may go unseen: the stat still differs (ctime)."""
    old = time.time() - 60
    for path in paths:
        os.utime(path, (old, old))


def settled(ws: Path) -> None:
    aged(*[p for p in ws.rglob("*") if "cache" not in p.relative_to(ws).parts], ws)


def git(ws: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(ws), *args], check=True,
                   capture_output=True)
    settled(ws)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("noop") / "ws"
    (ws / "models").mkdir(parents=True)
    (ws / "WORKSPACE.models").write_text("")
    (ws / "BUILD.models").write_text(BUILD)
    (ws / "models" / "__init__.py").write_text("")
    shutil.copy(NETS, ws / "models" / "nets.py")
    aged(*ws.rglob("*"), ws)
    proc = run_cli(ws, "build", *TARGETS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    aged(*ws.rglob("*"), ws)
    return ws


@pytest.fixture
def ws(built: Path, tmp_path: Path) -> Path:
    """A copy of the built workspace whose command has its stamp: its first build takes the full path
    and leaves the stamp, the next takes the fast one."""
    ws = tmp_path / "ws"
    shutil.copytree(built, ws, symlinks=True)
    assert run(ws, "build", *TARGETS)[0] == "full"
    assert run(ws, "build", *TARGETS)[0] == "fast"
    return ws


def test_the_fast_path_says_what_the_full_path_says(ws):
    git(ws, "init", "-q")  # a repository with no commit: the release warns that its provenance is dirty
    assert run(ws, "build", *TARGETS)[0] == "full"
    route, fast, _ = run(ws, "build", *TARGETS)
    _, full, _ = run(ws, "build", *TARGETS, "--build-events", str(ws.parent / "events.jsonl"))  # never stamped
    timing = re.compile(r" in \d+\.\d+s")
    assert route == "fast"
    assert timing.sub("", fast.stdout).split() == timing.sub("", full.stdout).split()
    assert "2 targets up to date, 0 actions run (3 cached), 1 warning" in fast.stdout
    assert "WARNING: //:rel (release): the workspace has changes not committed to git" in fast.stdout


def test_the_fast_path_imports_and_reads_a_fixed_set(ws):
    """What a no-op imports and what it reads, listed: a new import on this path, or a file read per
    target, must be a choice made in review (and this list changed with it)."""
    _, _, report = run(ws, "build", *TARGETS)
    ours = {m for m in report["modules"] if m.split(".")[0] in ("buildsys", "modelbuild", "rules")}
    assert ours == {"modelbuild", "modelbuild.__main__", "buildsys", "buildsys.errors", "buildsys.cli",
                    "buildsys.cli.noop", "buildsys.cache", "buildsys.cache.layout", "buildsys.load",
                    "buildsys.load.workspace",
                    "buildsys.units"}  # the summary's counts ("1 target"), as the full path words them: stdlib only
    startup = {"__main__", "_distutils_hack"}  # and an editable install's finder: Python's start, not ours
    others = {m.split(".")[0] for m in report["modules"]} - set(sys.stdlib_module_names) - {"buildsys", "modelbuild"}
    assert {m for m in others - startup if not m.startswith("__editable__")} == set()  # no pydantic, rich, ...
    code = (".py", ".pyc", ".so")
    read = [p for p in report["opened"] if not p.endswith(code) and not p.endswith("-report.json")]
    (stamp,) = (ws / "cache" / "stamps").iterdir()
    assert read == [str(stamp)]  # and the rc files only if they exist, for a --cache-dir they may give


def test_a_cache_dir_from_the_rc_file_finds_its_stamp(ws, tmp_path):
    """The cache the workspace's .modelbuildrc names (here in a --config group) holds the stamp, and
    the fast path looks there; the command line's --cache-dir still comes first."""
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(ws / "cache", elsewhere)
    (ws / ".modelbuildrc").write_text(f"build:ci --cache-dir={elsewhere}\n")
    aged(ws / ".modelbuildrc", ws)
    assert [run(ws, "build", *TARGETS, "--config", "ci")[0] for _ in range(2)] == ["full", "fast"]
    assert len(list((elsewhere / "stamps").iterdir())) == 2  # the workspace cache's copy, and this command's
    assert run(ws, "build", *TARGETS, "--config", "ci", "--cache-dir", str(ws / "cache"))[0] == "full"


def test_the_stamp_covers_the_code_that_ran_the_build(ws):
    (stamp,) = (ws / "cache" / "stamps").iterdir()
    stats = json.loads(stamp.read_text())["stats"]
    import buildsys.cli.main
    import rules.steps.export

    for module in (buildsys.cli.main, rules.steps.export):
        assert module.__file__ in stats
    assert str(ws / "models" / "nets.py") in stats and str(ws / "out" / "mlp_pt2.pt2") in stats


CHANGES = {
    "a model source edited": lambda ws: (ws / "models" / "nets.py").write_text(NETS.read_text() + "# a comment\n"),
    "BUILD.models edited": lambda ws: (ws / "BUILD.models").write_text(BUILD + "# a comment\n"),
    "a package added": lambda ws: ((ws / "pkg").mkdir(), (ws / "pkg" / "BUILD.models").write_text("")),
    "an artifact removed": lambda ws: (ws / "out" / "mlp_pt2.pt2").unlink(),
    "an artifact changed": lambda ws: (ws / "out" / "mlp_pt2.pt2").write_bytes(b"not a program"),
    "a file added to out/": lambda ws: (ws / "out" / "stray.txt").write_text("stray"),
    "a file added beside the sources": lambda ws: (ws / "models" / "notes.txt").write_text("notes"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_any_change_takes_the_full_path_and_the_stamp_follows(ws, change):
    artifact = (ws / "out" / "mlp_pt2.pt2").read_bytes()
    CHANGES[change](ws)
    settled(ws)
    path, proc, _ = run(ws, "build", *TARGETS)
    assert path == "full", proc.stdout
    assert (ws / "out" / "mlp_pt2.pt2").read_bytes() == artifact  # what the build put back, or kept
    assert run(ws, "build", *TARGETS)[0] == "fast"


def test_another_command_or_environment_has_a_stamp_of_its_own(ws):
    assert run(ws, "build", "//:mlp_pt2")[0] == "full"
    assert run(ws, "build", *TARGETS, "-j", "1")[0] == "full"
    assert run(ws, "build", *TARGETS, env={"MODELBUILD_CACHE_DIR": str(ws / "cache")})[0] == "full"
    assert run(ws, "build", *TARGETS, env={"SOURCE_DATE_EPOCH": "1700000000"})[0] == "full"
    assert len(list((ws / "cache" / "stamps").iterdir())) == 5  # each command left its own


BAD_STAMPS = {
    "garbage": lambda stamp: os.urandom(64),
    "a pickle": lambda stamp: pickle.dumps({"key": "x"}),
    "another command's": lambda stamp: json.dumps({**stamp, "key": "0" * 64}).encode(),
    "of another shape": lambda stamp: json.dumps({**stamp, "stats": list(stamp["stats"])}).encode(),
    "with warnings of another shape": lambda stamp: json.dumps({**stamp, "warnings": 7}).encode(),
}


@pytest.mark.parametrize("bad", BAD_STAMPS)
def test_a_stamp_that_cannot_be_used_is_a_miss(ws, bad):
    (path,) = (ws / "cache" / "stamps").iterdir()
    path.write_bytes(BAD_STAMPS[bad](json.loads(path.read_text())))
    route, proc, _ = run(ws, "build", *TARGETS)
    assert route == "full" and "2 targets up to date" in proc.stdout, proc.stdout
    assert run(ws, "build", *TARGETS)[0] == "fast"  # healed: the full path wrote it again


def test_a_commit_takes_the_full_path_and_the_release_names_it(ws):
    """A release's provenance names the commit: committing changes no workspace file, yet the release
    must be built again."""
    git(ws, "init", "-q")
    (ws / ".gitignore").write_text("out/\ncache/\n")
    git(ws, "add", "-A")
    git(ws, "commit", "-q", "-m", "first")
    assert run(ws, "build", *TARGETS)[0] == "full"
    assert run(ws, "build", *TARGETS)[0] == "fast"
    before = (ws / "out" / "rel.tar.gz").read_bytes()
    git(ws, "commit", "-q", "--allow-empty", "-m", "second")
    path, proc, _ = run(ws, "build", *TARGETS)
    assert path == "full" and "1 action run" in proc.stdout, proc.stdout
    assert (ws / "out" / "rel.tar.gz").read_bytes() != before


def test_a_target_query_answers_from_its_stamp_until_the_workspace_changes(ws):
    query = ("query", "//...", "--output", "label")
    route, first, _ = run(ws, *query)
    assert route == "full" and {"//:mlp", "//:mlp_pt2", "//:rel"} <= set(first.stdout.split())
    route, again, report = run(ws, *query)
    assert route == "fast" and again.stdout == first.stdout
    assert "buildsys.load.target_graph" not in report["modules"]
    (ws / "pkg").mkdir()
    (ws / "pkg" / "BUILD.models").write_text('model(name = "m", entry = "models.nets:TinyMLP", inputs = {"x": tensor([4, 16])})\n')
    settled(ws)
    route, changed, _ = run(ws, *query)
    assert route == "full" and "//pkg:m" in changed.stdout.split()
    assert run(ws, *query)[0] == "fast"
    assert run(ws, "query", "//...")[0] == "full"  # the long form (rich's, for a terminal) is never stamped
    assert run(ws, *query, "--deps")[0] == "full"  # another command


def test_a_failed_build_leaves_no_stamp(ws):
    (ws / "models" / "nets.py").write_text("class TinyMLP:\n    def __init__(self):\n        raise RuntimeError('broken on purpose')\n")
    proc = run_cli(ws, "build", *TARGETS)
    assert proc.returncode == 1
    assert list((ws / "cache" / "stamps").iterdir()) == []

def git_in(where: Path, *args: str) -> None:  # no settling: these tests read the state itself
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(where), *args], check=True,
                   capture_output=True)


def test_a_commit_changes_the_git_state_of_a_repository_and_of_a_worktree(tmp_path):
    repo, tree = tmp_path / "repo", tmp_path / "tree"
    repo.mkdir()
    git_in(repo, "init", "-q")
    git_in(repo, "commit", "-q", "--allow-empty", "-m", "first")
    git_in(repo, "worktree", "add", "-q", str(tree))
    for checkout in (repo, tree):
        before = snapshot(checkout)
        assert any(path.endswith("HEAD") for path in before), before  # the worktree's own HEAD, found
        git_in(checkout, "commit", "-q", "--allow-empty", "-m", "next")
        assert snapshot(checkout) != before


def test_an_unreadable_git_directory_never_matches(tmp_path):
    (tmp_path / ".git").write_text("gitdir: /nowhere\n")
    state = _git_state(tmp_path / ".git")
    assert state == {str(tmp_path / ".git"): [-1, -1, -1, -1]}

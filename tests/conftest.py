import pytest

from helpers import build, copy_example


@pytest.fixture(scope="session")
def example(tmp_path_factory):
    """The example workspace, copied and built cold once for the whole session."""
    ws = copy_example(tmp_path_factory.mktemp("example"))
    proc, events = build(ws, events="cold.jsonl")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ws, events


@pytest.fixture(scope="session")
def tiny_built(tmp_path_factory):
    """tests/workspaces/release with //:mlp_pt2 built (2 actions), for tests that need a cache to act on."""
    import shutil
    from pathlib import Path

    ws = tmp_path_factory.mktemp("tiny") / "ws"
    shutil.copytree(Path(__file__).parent / "workspaces" / "release", ws,
                    ignore=shutil.ignore_patterns("__pycache__", "cache", "out"))
    proc, _ = build(ws, "//:mlp_pt2", extra=("-j", "1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ws


@pytest.fixture
def tiny_ws(tiny_built, tmp_path):
    """A fresh copy of tiny_built, cache and out/ included, for one test to change."""
    import shutil

    dst = tmp_path / "ws"
    shutil.copytree(tiny_built, dst, symlinks=True)
    return dst

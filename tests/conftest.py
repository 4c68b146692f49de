"""The session's environment, and the workspaces that tests share.

The suite runs as on a new machine, whatever the one it runs on holds: the session and every process
it starts get a home of their own (so nothing reads or writes the real ~/.ray, ~/.cache or
~/.config), and no RAY_* or MODELBUILD_* setting of the developer's reaches a test. A test that needs
one says so itself."""
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from helpers import build, copy_example

_HOME = tempfile.mkdtemp(prefix="modelbuild-tests-home-")
for _name in [n for n in os.environ if n.startswith(("RAY_", "MODELBUILD_"))]:
    del os.environ[_name]
os.environ.update(HOME=_HOME, XDG_CACHE_HOME=os.path.join(_HOME, ".cache"),
                  XDG_CONFIG_HOME=os.path.join(_HOME, ".config"), XDG_DATA_HOME=os.path.join(_HOME, ".local", "share"))


def pytest_unconfigure(config):
    shutil.rmtree(_HOME, ignore_errors=True)


TIERS = ("unit", "steps", "e2e", "cluster")


def pytest_ignore_collect(collection_path, config):
    """`-m <tier>` does not import the other tiers' modules (torch and all) only to deselect them."""
    chosen = (config.getoption("markexpr") or "").strip()
    parts = collection_path.relative_to(Path(__file__).parent).parts if collection_path.is_relative_to(Path(__file__).parent) else ()
    if chosen in TIERS and parts and parts[0] in TIERS and parts[0] != chosen:
        return True
    return None


def pytest_collection_modifyitems(config, items):
    """Mark each test by its tier folder (tests/<tier>/...): `pytest -m unit` is the fast loop."""
    root = Path(__file__).parent
    for item in items:
        tier = Path(item.fspath).relative_to(root).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: every test file sits in one tier folder, one of {', '.join(TIERS)}")
        item.add_marker(getattr(pytest.mark, tier))


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
    ws = tmp_path_factory.mktemp("tiny") / "ws"
    shutil.copytree(Path(__file__).parent / "workspaces" / "release", ws,
                    ignore=shutil.ignore_patterns("__pycache__", "cache", "out"))
    proc, _ = build(ws, "//:mlp_pt2", extra=("-j", "1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ws


@pytest.fixture
def tiny_ws(tiny_built, tmp_path):
    """A fresh copy of tiny_built, cache and out/ included, for one test to change."""
    dst = tmp_path / "ws"
    shutil.copytree(tiny_built, dst, symlinks=True)
    return dst

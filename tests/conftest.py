"""The session's environment, and the workspaces that tests share.

The suite runs as on a new machine, whatever the one it runs on holds: the session and every process
it starts get a home of their own (so nothing reads or writes the real ~/.ray, ~/.cache or
~/.config), and no RAY_* or MODELBUILD_* setting of the developer's reaches a test. A test that needs
one says so itself."""
import os
import shutil
import tempfile

import pytest

from helpers import build, copy_example

_HOME = tempfile.mkdtemp(prefix="modelbuild-tests-home-")
for _name in [n for n in os.environ if n.startswith(("RAY_", "MODELBUILD_"))]:
    del os.environ[_name]
os.environ.update(HOME=_HOME, XDG_CACHE_HOME=os.path.join(_HOME, ".cache"),
                  XDG_CONFIG_HOME=os.path.join(_HOME, ".config"), XDG_DATA_HOME=os.path.join(_HOME, ".local", "share"))


def pytest_unconfigure(config):
    shutil.rmtree(_HOME, ignore_errors=True)


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

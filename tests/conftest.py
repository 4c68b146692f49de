import pytest

from helpers import build, copy_example


@pytest.fixture(scope="session")
def example(tmp_path_factory):
    """The example workspace, copied and built cold once for the whole session."""
    ws = copy_example(tmp_path_factory.mktemp("example"))
    proc, events = build(ws, events="cold.jsonl")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ws, events

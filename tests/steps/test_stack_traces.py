"""The stack traces a program keeps (rules/lib/stack_traces.py): the user's frames lose their line
numbers and comments, which do not key the export; messages find the line in the file again."""
from __future__ import annotations

from pathlib import Path

from rules.errors import user_frames
from rules.lib.stack_traces import find_line, frames, line_free

MODULE = '''# moved down
"""A model.

Its docstring has a blank line."""
import torch  # the toolchain


class Net(torch.nn.Module):
    def forward(self, x):
        label = "a # in a string is code"
        return torch.relu(x) + 1
'''


TRACE = '''File "models/net.py", line 10, in forward
    return torch.relu(x) + 1  # off by one
  File "/venv/lib/python3.11/site-packages/torch/nn/functional.py", line 1702, in relu
    result = torch.relu(input)'''


def test_a_programs_own_frames_lose_their_line_numbers_and_comments_library_frames_keep_them():
    free = line_free(TRACE)
    assert free.splitlines()[:2] == ['File "models/net.py", in forward', "    return torch.relu(x) + 1"]
    assert free.splitlines()[2:] == TRACE.splitlines()[2:]
    assert line_free(free) == free
    assert frames(free)[0] == ("models/net.py", "", "forward", "return torch.relu(x) + 1")


def test_a_message_finds_a_line_free_frame_in_the_file_as_it_is(tmp_path: Path):
    (tmp_path / "net.py").write_text(MODULE)
    assert find_line(tmp_path / "net.py", "forward", "return torch.relu(x) + 1") == "11"
    assert find_line(tmp_path / "net.py", "forward", "return gone") == ""
    assert find_line(tmp_path / "missing.py", "forward", "x") == ""


def test_where_an_op_comes_from_names_the_users_line_as_the_file_has_it(tmp_path: Path):
    from rules.toolchain_errors import origin

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text(MODULE)
    assert origin(line_free(TRACE), tmp_path) == (
        "your code at models/net.py:11 (return torch.relu(x) + 1), "
        "made at torch/nn/functional.py:1702 (result = torch.relu(input))")


def test_a_model_module_that_does_not_parse_is_the_users_code_at_its_line(tmp_path: Path):
    """A SyntaxError has no frame in the user's file (the import system raised it), so the line is its own."""
    (tmp_path / "models").mkdir()
    module = tmp_path / "models" / "bert.py"
    module.write_text("import torch\nconfig = dict(eps=1e-6, eps=1e-7)\n")
    try:
        compile(module.read_text(), str(module), "exec")
    except SyntaxError as err:
        shown = user_frames(err, tmp_path)
    assert shown.splitlines()[1:] == ['  File "models/bert.py", line 2, in <module>', "    config = dict(eps=1e-6, eps=1e-7)"]

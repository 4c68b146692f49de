"""Python modules key actions by their code: comments and blank lines change no key, and the
stack traces a program keeps lose what those would have changed (the line numbers)."""
from __future__ import annotations

import os
from pathlib import Path

from buildsys.cache.stat import FileDigests
from buildsys.digests import digest_code
from rules.lib.stack_traces import find_line, frames, line_free

MODULE = '''"""A model.

Its docstring has a blank line."""
import torch  # the toolchain


class Net(torch.nn.Module):
    def forward(self, x):
        label = "a # in a string is code"
        return torch.relu(x) + 1
'''


def digest_of(tmp_path: Path, text: str) -> str | None:
    path = tmp_path / "net.py"
    path.write_text(text)
    return digest_code(path)


def test_comments_and_blank_lines_do_not_change_the_code_digest(tmp_path: Path):
    base = digest_of(tmp_path, MODULE)
    assert base is not None
    for edit in (
        "# a header comment\n\n\n" + MODULE,
        MODULE.replace("        return", "        # why\n\n        return"),
        MODULE.replace("+ 1\n", "+ 1  # off by one, on purpose\n"),
        MODULE + "\n\n# the end\n",
    ):
        assert digest_of(tmp_path, edit) == base, edit


def test_code_strings_docstrings_and_spacing_change_the_code_digest(tmp_path: Path):
    base = digest_of(tmp_path, MODULE)
    for edit in (
        MODULE.replace("+ 1", "+ 2"),
        MODULE.replace("a # in a string", "a # in the string"),
        MODULE.replace("has a blank line.", "has a blank line!"),
        MODULE.replace("A model.\n\nIts", "A model.\nIts"),  # inside a string, a blank line is code
        MODULE.replace("torch.relu(x) + 1", "torch.relu(x)+1"),  # what a stack trace would quote
    ):
        assert digest_of(tmp_path, edit) not in (base, None), edit


def test_a_file_that_does_not_tokenize_is_keyed_by_its_bytes(tmp_path: Path):
    assert digest_of(tmp_path, 'x = """never closed\n') is None
    digests = FileDigests(tmp_path / "stat")
    path = tmp_path / "net.py"
    assert digests.code_digest(path) == digests.digest(path)
    digests.close()


def test_the_stat_cache_remembers_code_digests_and_forgets_them_when_the_file_changes(tmp_path: Path):
    path = tmp_path / "net.py"
    path.write_text(MODULE)
    os.utime(path, (1, 1))  # old enough to be remembered (not racy)
    first = FileDigests(tmp_path / "stat")
    code = first.code_digest(path)
    first.close()
    again = FileDigests(tmp_path / "stat")
    assert again.code_digest(path) == code and again.hashed == 0
    path.write_text(MODULE.replace("+ 1", "+ 3"))
    os.utime(path, (2, 2))
    assert again.code_digest(path) != code  # in the same build, too
    again.close()


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
    (tmp_path / "net.py").write_text("# moved down\n" + MODULE)
    assert find_line(tmp_path / "net.py", "forward", "return torch.relu(x) + 1") == "11"
    assert find_line(tmp_path / "net.py", "forward", "return gone") == ""
    assert find_line(tmp_path / "missing.py", "forward", "x") == ""


def test_where_an_op_comes_from_names_the_users_line_as_the_file_has_it(tmp_path: Path):
    from rules.toolchain_errors import origin

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text("# moved down\n" + MODULE)
    assert origin(line_free(TRACE), tmp_path) == (
        "your code at models/net.py:11 (return torch.relu(x) + 1), "
        "made at torch/nn/functional.py:1702 (result = torch.relu(input))")

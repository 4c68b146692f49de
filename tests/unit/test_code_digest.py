"""Python modules key actions by their code: comments and blank lines change no key (the stack traces
a program keeps lose the line numbers they would change: tests/steps/test_stack_traces.py)."""
from __future__ import annotations

import os
from pathlib import Path

from buildsys.cache.stat import FileDigests
from buildsys.digests import digest_code

MODULE = '''"""A model.

Its docstring has a blank line."""
import math  # the standard library: this text is written to a file, never imported


class Net:
    def forward(self, x):
        label = "a # in a string is code"
        return math.tanh(x) + 1
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
        MODULE.replace("math.tanh(x) + 1", "math.tanh(x)+1"),  # what a stack trace would quote
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

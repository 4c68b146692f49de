"""The stack traces a program's nodes carry (node.meta["stack_trace"], Python's traceback format).

A model's own modules key their actions by their code, not their bytes (buildsys.digests.digest_code),
so a comment or a blank line reruns nothing. A saved program must then not depend on them either:
its frames in the user's code keep their file, function and code line, but lose the line number and
any trailing comment. A message that points at such a frame finds the line again in the file.
"""
from __future__ import annotations

import io
import re
import sysconfig
import tokenize
from pathlib import Path

_FRAME = re.compile(r'(?P<indent>\s*)File "(?P<path>[^"]+)"(?:, line (?P<line>\d+))?, in (?P<function>.+)')
_DEF = re.compile(r"\s*(?:async\s+)?def\s+(\w+)")
# Frames in these keep their line numbers: their files change only with the toolchain, which keys every action.
_LIBRARIES = tuple({sysconfig.get_paths()[k].rstrip("/") + "/" for k in ("stdlib", "purelib", "platlib")})


def without_comment(line: str) -> str:
    """A line of code without its trailing comment ('#' in a string is code), stripped."""
    if "#" not in line:
        return line.strip()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line).readline):
            if tok.type == tokenize.COMMENT:
                return line[:tok.start[1]].strip()
    except (tokenize.TokenError, SyntaxError):  # a line that opens a bracket or a string it does not close
        pass
    return line.strip()


def _library(path: str) -> bool:
    return "site-packages/" in path or path.startswith(_LIBRARIES)


def line_free(trace: str) -> str:
    """The trace with the user's frames (any file outside the toolchain's) stripped of their line
    numbers and of the comments on their code lines."""
    lines = trace.split("\n")
    strip = False
    for i, line in enumerate(lines):
        m = _FRAME.match(line)
        if m:
            strip = not _library(m["path"])
            if strip:
                lines[i] = f'{m["indent"]}File "{m["path"]}", in {m["function"]}'
        elif strip and line.strip():
            lines[i] = line[:len(line) - len(line.lstrip())] + without_comment(line)
            strip = False
    return "\n".join(lines)


def frames(trace: str) -> list[tuple[str, str, str, str]]:
    """(path, line number or "", function, code line) for each frame of the trace."""
    lines = trace.splitlines()
    found = []
    for i, line in enumerate(lines):
        m = _FRAME.match(line)
        if m:
            code = lines[i + 1].strip() if i + 1 < len(lines) and not _FRAME.match(lines[i + 1]) else ""
            found.append((m["path"], m["line"] or "", m["function"].strip(), code))
    return found


def find_line(path: Path, function: str, code: str) -> str:
    """The number of the line in `function` whose code is `code`, in the file as it is now; "" if the
    file cannot be read or has no such line."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    current, anywhere = None, ""
    for number, line in enumerate(text, 1):
        if m := _DEF.match(line):
            current = m[1]
        if code and without_comment(line) == code:
            if current == function:
                return str(number)
            anywhere = anywhere or str(number)
    return anywhere

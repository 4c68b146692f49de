"""SHA-256 digests: of canonical JSON, of bytes and of files, and of a Python file's code."""
from __future__ import annotations

import hashlib
import io
import json
import tokenize
from pathlib import Path

_CHUNK = 1 << 20


def canonical_json(value: object) -> str:
    """Sorted keys, no whitespace: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def digest_json(value: object) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def code_lines(source: str) -> list[str]:
    """A Python source's code, line by line: each line without its comment and trailing space, lines
    left empty dropped, and the lines of a multi-line string kept as they are. Raises SyntaxError (or
    tokenize.TokenError) where the source does not tokenize."""
    lines = source.splitlines()
    cut: dict[int, int] = {}  # 0-based row -> column where its comment starts
    verbatim: set[int] = set()  # rows inside a multi-line string, after its first
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            cut[tok.start[0] - 1] = tok.start[1]
        elif tok.start[0] != tok.end[0]:  # a string (or f-string) over several lines
            verbatim.update(range(tok.start[0], tok.end[0]))
    code = []
    for row, line in enumerate(lines):
        if row in verbatim:
            code.append(line)
        elif text := line[:cut.get(row, len(line))].rstrip():
            code.append(text)
    return code


def digest_code(path: Path | str) -> str | None:
    """What a Python file's behaviour depends on, as a digest: its code lines (code_lines), so a comment
    or a blank line changes nothing. Line numbers are not part of it, so whatever a build keeps of
    them must be dropped (export's stack traces are). None if the file does not tokenize: its bytes
    then stand for it."""
    with open(path, "rb") as f:
        return digest_code_bytes(f.read())


def digest_code_bytes(data: bytes) -> str | None:
    """digest_code of a Python file's bytes (as git show gives a revision's)."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        lines = code_lines(data.decode(encoding))
    except (SyntaxError, tokenize.TokenError, UnicodeDecodeError, LookupError):
        return None
    return hashlib.sha256(("python code\0" + "\n".join(lines)).encode()).hexdigest()

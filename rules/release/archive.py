"""Deterministic .tar.gz archives, written and read with the standard library's tarfile and gzip.

Nothing of the machine or the moment leaks in: entries sorted, every mtime the given epoch,
uid/gid 0 without user or group names, modes 0644 (0755 for directories and executables), and
a gzip header with neither a file name nor a time.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import stat
import tarfile
import zlib
from pathlib import Path, PurePosixPath


class BadArchive(Exception):
    """The file is not a readable .tar.gz (corrupt, truncated, or something else)."""


def write(dest: Path, files: dict[str, Path | bytes | None], epoch: int) -> None:
    """files: archive path -> a file to copy, bytes, or None for a directory (kept even when empty)."""
    dirs = {str(parent) for name in files for parent in PurePosixPath(name).parents if str(parent) != "."}
    dirs |= {name for name, source in files.items() if source is None}
    with open(dest, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(dirs | set(files)):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
            if name in dirs:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            source = files[name]
            data = source if isinstance(source, bytes) else Path(source).read_bytes()
            executable = not isinstance(source, bytes) and Path(source).stat().st_mode & stat.S_IXUSR
            info.size, info.mode = len(data), 0o755 if executable else 0o644
            tar.addfile(info, io.BytesIO(data))


def read(path: Path) -> tuple[dict[str, bytes], list[str]]:
    """Regular files by archive path, and a description of every entry that is not a regular file
    or directory (links, devices: a release holds none)."""
    files, odd = {}, []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.isdir():
                    continue
                if not member.isfile():
                    odd.append(f"{member.name} (a {'link' if member.issym() or member.islnk() else 'special file'})")
                    continue
                files[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise BadArchive(f"{path} is not a readable .tar.gz archive (corrupt or truncated): {err}") from None
    except OSError as err:
        raise BadArchive(f"cannot read {path}: {err.strerror or err}") from None
    return files, odd


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

"""The no-op's fast path, as ninja's: stat what the last successful build read, and compare.
(A target query gets the same: `query --output label` answers from its stamp while nothing changed.)

A build that succeeds leaves its command (directory, arguments, the environment it reads) a stamp:
the stat of every file and directory of the workspace, of every file it digested (model sources,
data, rule code), of the code that ran it, of the git state a release reads, and of every artifact
it placed in out/. Run again, the same command stats those and, if none changed, prints what that
build would print again: no load, no plan, no cache lookup, no import of the engine's heavier parts.

Any doubt takes the full path, which checks everything by content: no stamp, one that does not
parse or is another command's, a stat that differs, a file changed in the two seconds before the
build (its stat may not show a second change in the same tick, git's "racy" case), or a workspace
that changed while the build ran. A stamp is plain JSON; an unusable one is a miss, said nowhere.

Light on purpose: this module and what it imports load no pydantic, networkx, rich or diskcache.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

from ..cache.layout import CACHE_ENV, Layout, cache_dir
from ..load.workspace import Workspace, walked
from ..units import count

_VERSION = 1
_RACY_NS = 2_000_000_000
# What a build reads from the environment besides its flags: the cache and remote settings
# (MODELBUILD_*), where Python finds modules, and a release's timestamp.
_ENV_PREFIX = "MODELBUILD_"
_ENV_NAMES = ("PYTHONPATH", "SOURCE_DATE_EPOCH")


def command_key(argv: list[str], cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIX) or k in _ENV_NAMES}
    ident = {"version": _VERSION, "argv": list(argv), "cwd": str(cwd), "env": env, "python": sys.version,
             "executable": sys.executable, "host": os.uname().nodename,
             # the user's rc file gives options too (the workspace's is among the workspace's files)
             "user_rc": _stat(os.path.join(os.path.expanduser("~"), ".modelbuildrc"))}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _stat(path: str) -> list[int] | None:
    """What tells a file's or a directory's change: (inode, size, mtime_ns, ctime_ns); None if absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _flag(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg[len(name) + 1:]
    return None


def _flags(argv: list[str], name: str) -> list[str]:
    """Every value of a repeatable flag (--config a --config=b)."""
    return [argv[i + 1] if arg == name else arg[len(name) + 1:] for i, arg in enumerate(argv)
            if (arg == name and i + 1 < len(argv)) or arg.startswith(name + "=")]


def _cache_flag(argv: list[str], root: Path) -> str | None:
    """--cache-dir where the full path finds it: the command line, else (unless the environment
    names the cache) the rc files, read in rc.apply's order; the last line to give it wins."""
    flag = _flag(argv, "--cache-dir")
    if flag or os.environ.get(CACHE_ENV):
        return flag
    files = [(Path(os.path.expanduser("~")) / ".modelbuildrc", "~/"), (root / ".modelbuildrc", "")]
    files = [(path, f"{prefix}{path.name}") for path, prefix in files if path.is_file()]
    if not files:  # the usual case, and rc.py (argparse, shlex) stays unimported
        return None
    from .rc import read

    configs, chosen = _flags(argv, "--config"), None
    for path, shown in files:
        lines = [line for line in read(path, shown) if line.command == argv[0]]
        for line in [l for l in lines if l.config is None] + [l for c in configs for l in lines if l.config == c]:
            chosen = _flag(list(line.tokens), "--cache-dir") or chosen
    return chosen


def stamp_path(argv: list[str], cwd: Path, root: Path, cache: Path | None = None) -> Path:
    cache = cache or cache_dir(_cache_flag(argv, root), root)
    return Layout(cache).stamps / f"{command_key(argv, cwd)}.json"


# The fast path ------------------------------------------------------------------------------------
def _current(argv: list[str]) -> dict | None:
    """This command's stamp, if nothing it records has changed since."""
    cwd = Path.cwd()
    file = stamp_path(argv, cwd, Workspace.find(cwd).root)
    stamp = json.loads(file.read_bytes())
    if not (isinstance(stamp, dict) and stamp.get("key") == command_key(argv, cwd) and isinstance(stamp.get("stats"), dict)):
        return None
    if any(_stat(path) != recorded for path, recorded in stamp["stats"].items()):
        return None
    try:
        os.utime(file)  # used: `cache gc` keeps it
    except OSError:  # a read-only cache: the answer stands all the same
        pass
    return stamp


def up_to_date(argv: list[str]) -> int | None:
    """If nothing the last successful build of this command read has changed, print its summary and
    return 0; else None, and the command runs in full."""
    start = time.monotonic()
    try:
        stamp = _current(argv)
        if stamp is None:
            return None
        lines = [f"{_paint('WARNING:', '33')} {source}: {text}" for source, text in stamp["warnings"]]
        warned = len(lines)
        noted = f", {count(warned, 'warning')}" if warned else ""
        lines.append(f"{_paint(count(stamp['targets'], 'target') + ' up to date', '32')}, 0 actions run "
                     f"({stamp['actions']} cached){noted} in {time.monotonic() - start:.2f}s")
    except Exception:  # noqa: BLE001 (no workspace, no stamp, a stamp of another shape: the full path decides)
        return None
    print("\n".join(lines), flush=True)
    return 0


def answered(argv: list[str]) -> int | None:
    """A target query (`query ... --output label`) whose workspace and code are as the last time it ran:
    print what it printed then and return 0; else None. What it read (BUILD files, .star files, the
    directories `//...` walks) is all in the workspace's snapshot."""
    try:
        stamp = _current(argv)
        if stamp is None or not isinstance(stamp.get("output"), str):
            return None
    except Exception:  # noqa: BLE001 (as for a build)
        return None
    sys.stdout.write(stamp["output"])
    sys.stdout.flush()
    return 0


def _paint(text: str, color: str) -> str:
    """As the full path's console shows it: colored on a terminal, plain elsewhere."""
    if sys.stdout.isatty() and "NO_COLOR" not in os.environ:
        return f"\033[{color}m{text}\033[0m"
    return text


# Writing a stamp ----------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, list[int] | None]:
    """Every directory and file of the workspace that a build may read (out/ and cache/ aside), and
    the git state a release's provenance reads."""
    stats: dict[str, list[int] | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if walked(dirpath, d, dirpath == str(root))]
        stats[dirpath] = _stat(dirpath)
        for name in filenames:
            stats[os.path.join(dirpath, name)] = _stat(os.path.join(dirpath, name))
    for directory in (root, *root.parents):
        if (directory / ".git").exists():
            stats.update(_git_state(directory / ".git"))
            break
    return stats


def _git_state(git: Path) -> dict[str, list[int] | None]:
    """HEAD, the index, the branch's ref and packed-refs: what a commit, a checkout or a reset changes."""
    try:
        own = common = git
        if git.is_file():  # a worktree: "gitdir: <its git dir>", whose refs live in the common dir
            own = (git.parent / git.read_text().removeprefix("gitdir:").strip()).resolve()
            if (own / "commondir").is_file():
                common = (own / (own / "commondir").read_text().strip()).resolve()
        ref = (own / "HEAD").read_text().removeprefix("ref: ").strip()
    except OSError:
        return {str(git): [-1, -1, -1, -1]}  # unreadable: a stat no file has, so no stamp ever matches
    parts = (own / "HEAD", own / "index", common / "packed-refs", common / "refs" / "heads", common / ref)
    return {str(part): _stat(str(part)) for part in parts}


def write(argv: list[str], cwd: Path, root: Path, cache: Path, before: dict, started_ns: int,
          read: dict[str, list[int]], placed: list[Path], targets: int, actions: int,
          warnings: list[tuple[str, str]]) -> bool:
    """Leave this build's command a stamp, if what the build read is certain; True if it did."""
    outputs = {str(path): _stat(str(path)) for artifact in placed
               for path in [artifact, artifact.parent, *(_files(artifact) if artifact.is_dir() else [])]}
    read = {path: s for path, s in read.items() if path not in outputs}  # the build may have replaced them
    stats = _settled(root, before, read, started_ns)
    if stats is None:
        return False
    return _store(argv, cwd, root, cache, {"stats": {**stats, **outputs}, "targets": targets, "actions": actions,
                                           "warnings": [list(w) for w in warnings]})


def write_query(argv: list[str], cwd: Path, root: Path, cache: Path, before: dict, started_ns: int, output: str) -> bool:
    """Leave a target query's command a stamp holding what it printed."""
    stats = _settled(root, before, {}, started_ns)
    return stats is not None and _store(argv, cwd, root, cache, {"stats": stats, "output": output})


def _settled(root: Path, before: dict, read: dict[str, list[int]], started_ns: int) -> dict | None:
    """What a stamp records: the workspace as the command found it, the files it read, the code that ran
    it and the packages it could import. None if any of it changed while it ran, or too recently to tell."""
    stats = {**before, **read}
    for module in list(sys.modules.values()):  # the code that ran the command, the rules' included
        file = getattr(module, "__file__", None)
        if file and os.path.isfile(file):
            stats.setdefault(file, _stat(file))
    for entry in sys.path:  # a package installed or removed shows here: the toolchain's versions come from there
        if entry and os.path.isdir(entry):
            stats.setdefault(entry, _stat(entry))
    after = snapshot(root)
    # git's index is rewritten by `git status` itself (the release's dirty check) when it refreshes
    # its stat data: taken as it is now, and not held to the two-second rule.
    index = {path: s for path, s in after.items() if path.endswith(os.sep + "index") and ".git" in Path(path).parts}
    if ({p: s for p, s in after.items() if p not in index} != {p: s for p, s in before.items() if p not in index}
            or any(_stat(p) != s for p, s in read.items())):
        return None  # the workspace changed while the command ran
    if any(s is not None and s[2] >= started_ns - _RACY_NS for p, s in stats.items() if p not in index):
        return None  # too recent to tell a second change in the same tick
    return {**stats, **index}


def _store(argv: list[str], cwd: Path, root: Path, cache: Path, stamp: dict) -> bool:
    path = stamp_path(argv, cwd, root, cache)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"key": command_key(argv, cwd), **stamp}))
        os.replace(tmp, path)
    except OSError:  # a full disk, say: the command succeeded all the same, and the next one takes the full path
        tmp.unlink(missing_ok=True)
        return False
    return True


def forget(argv: list[str], cwd: Path, root: Path, cache: Path) -> None:
    """A build of this command that did not succeed leaves no stamp from an earlier one."""
    try:
        stamp_path(argv, cwd, root, cache).unlink()
    except OSError:
        pass


def _files(directory: Path) -> list[Path]:
    return [Path(d, name) for d, dirnames, names in os.walk(directory) for name in [*dirnames, *names]]

"""The out/ tree: each target's artifact at out/<package>/<name><ext>, never anywhere else.

Artifacts are copies of CAS blobs (reflinks where the file system has them), never hard links,
so editing one cannot change the cache; the next build finds the edit by digest and restores it.
A log of what builds placed in this out/ tree (as ninja's .ninja_log) lets an output that no
target declares any more be removed without touching files modelbuild did not write. It is kept
in the cache directory, one file per out/ tree, so that out/ holds artifacts and nothing else.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from filelock import FileLock, Timeout

from .cache import scratch
from .cache.action_cache import OutputRecord
from .cache.cas import CAS
from .cache.stat import FileDigests
from .digests import digest_bytes
from .errors import UserError
from .labels import Label, Pattern


def default_out(workspace_root: Path) -> Path:
    """Where artifacts go unless --output says otherwise."""
    return workspace_root / "out"


def lock_out(out_dir: Path, on_progress) -> FileLock:
    """One build at a time writes a workspace's out/: a second one waits, and says so. The lock
    lives outside the workspace (nothing in out/ but artifacts, nothing new for git to see)."""
    name = hashlib.sha256(str(out_dir.resolve()).encode()).hexdigest()[:32]
    lock_dir = Path(tempfile.gettempdir()) / f"modelbuild-{os.getuid()}"
    lock_dir.mkdir(mode=0o700, exist_ok=True)
    lock = FileLock(lock_dir / f"out-{name}.lock", blocking=False)
    try:
        lock.acquire()
    except Timeout:
        on_progress("waiting", f"another build is writing {out_dir}; waiting for it to finish")
        lock = FileLock(lock_dir / f"out-{name}.lock")
        lock.acquire()
    return lock



class OutTree:
    def __init__(self, root: Path, cas: CAS, digests: FileDigests, logs: Path):
        if root.exists() and not root.is_dir():
            raise UserError(f"{root} is a file, but modelbuild writes the artifacts into a directory there; "
                            f"move or remove the file and build again")
        self.root = root
        self.cas = cas
        self.digests = digests
        self._swept: set[Path] = set()
        self._real_dirs: dict[str, Path] = {}
        # One {"label", "path"} line per output placed, in the cache's outputs/ (Layout.outputs).
        self.log = logs / f"{digest_bytes(str(root.resolve()).encode())[:24]}.jsonl"
        self._logged: dict[str, dict] | None = None  # relative path -> log entry

    def path(self, label: Label, ext: str) -> Path:
        path = self._package_dir(label.package) / f"{label.name}{ext}"
        if path.is_symlink():  # as resolve() would: the link's target, then the check below refuses it
            path = path.resolve()
        if not path.is_relative_to(self._real_root):  # labels cannot hold "..", but be sure
            raise ValueError(f"{label} would be written outside out/: {path}")
        return path

    def _package_dir(self, package: str) -> Path:
        """out/<package>, resolved once per build (a target's outputs share it)."""
        if package not in self._real_dirs:
            self._real_dirs[package] = (self.root / package).resolve()
        return self._real_dirs[package]

    @property
    def _real_root(self) -> Path:
        return self._package_dir("")

    def current_digest(self, path: Path, is_tree: bool, file_digest=None) -> str | None:
        file_digest = file_digest or self.digests.digest
        if is_tree:
            return CAS.tree_digest(path, file_digest) if path.is_dir() and not path.is_symlink() else None
        return file_digest(path) if path.is_file() and not path.is_symlink() else None

    def place(self, label: Label, ext: str, record: OutputRecord) -> tuple[Path, bool]:
        """Materialize the artifact unless out/ already holds exactly it. Returns (path, written)."""
        path = self.path(label, ext)
        if path.parent not in self._swept:  # what a killed build was writing here
            scratch.sweep(path.parent)
            self._swept.add(path.parent)
        self._log(label, path)
        if self.current_digest(path, record.is_tree) == record.digest:
            return path, False
        self.cas.materialize(record.digest, record.is_tree, path)
        return path, True

    # The log of placed outputs ----------------------------------------------------------------
    def logged(self) -> dict[str, dict]:
        """What builds placed here, by path relative to out/ (entries whose file is gone included)."""
        if self._logged is None:
            self._logged = {}
            try:
                lines = self.log.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                lines = []
            for line in lines:
                try:
                    entry = json.loads(line)
                    rel = Path(entry["path"])
                    Label.parse(entry["label"])
                except (ValueError, KeyError, TypeError, UserError):
                    continue  # a torn last line of a killed build, or not ours
                if not rel.is_absolute() and ".." not in rel.parts:
                    self._logged[rel.as_posix()] = {"label": entry["label"], "path": rel.as_posix()}
        return self._logged

    def _log(self, label: Label, path: Path) -> None:
        entry = {"label": str(label), "path": path.relative_to(self._real_root).as_posix()}
        if self.logged().get(entry["path"]) == entry:
            return
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as f:  # appended before the output is written: never unlogged
            f.write(json.dumps(entry, sort_keys=True) + "\n")
        self._logged[entry["path"]] = entry

    def remove_stale(self, artifacts: Mapping[Label, list[str]], patterns: Iterable[str],
                     packages: Callable[[], Iterable[str]]) -> list[Path]:
        """Remove the outputs earlier builds placed that no declared target owns now; returns their paths.

        artifacts: the exts of every target this build planned with an artifact; patterns: what the
        build asked for; packages: lists every package of the workspace. An output is removed only when
        this build knows every target that could own it: its package is gone, or a pattern covers
        the whole package (//..., //pkg/..., //pkg:all), or its target now puts its artifact elsewhere.
        A build of single labels leaves the rest of their packages' outputs alone (Bazel never removes
        outputs; ninja's cleandead removes what its whole manifest no longer names).
        """
        owned = {self.path(label, ext) for label, exts in artifacts.items() for ext in exts}
        whole = [p for p in map(Pattern.parse, patterns) if p.name is None]
        existing: set[str] | None = None
        removed: list[Path] = []
        logged = self.logged()
        for rel, entry in list(logged.items()):
            label = Label.parse(entry["label"])
            path = self._real_root / rel
            if path in owned:
                continue
            known = any(p.covers_package(label.package) for p in whole) or label in artifacts
            if not known and existing is None:
                existing = set(packages())
            if known or label.package not in existing:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                    removed.append(path)
                elif path.exists() or path.is_symlink():
                    path.unlink()
                    removed.append(path)
                del logged[rel]
                self._prune_empty(path.parent)
        if removed or len(logged) < self._log_lines():
            self._rewrite_log()
        return removed

    def _prune_empty(self, directory: Path) -> None:
        root = self.root.resolve()
        while directory != root and directory.is_relative_to(root):
            try:
                directory.rmdir()
            except OSError:  # not empty (or already gone)
                if directory.exists():
                    return
            directory = directory.parent

    def _log_lines(self) -> int:
        try:
            return len(self.log.read_text(errors="replace").splitlines())
        except FileNotFoundError:
            return 0

    def _rewrite_log(self) -> None:
        """The log compacted to one line per output, replaced atomically."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        scratch.sweep(self.log.parent)
        tmp = self.log.with_name(f"{scratch.prefix()}{self.log.name}")
        tmp.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in self.logged().values()))
        os.replace(tmp, self.log)

    def held_digests(self) -> set[str]:
        """The digests of what out/ holds now: every file's, and every directory's as a tree (so an
        artifact directory's manifest too). `cache gc` keeps these blobs, so that the next build need
        not run anything for them. Read from the files, not the log: a copied or moved out/ counts."""
        held: set[str] = set()

        def file_digest(path: Path) -> str:
            held.add(digest := self.digests.digest(path))
            return digest

        if not self.root.is_dir():
            return held
        for directory, _, _ in os.walk(self.root):  # symlinks are not followed: never outside out/
            held.add(CAS.tree_digest(Path(directory), file_digest))
        return held

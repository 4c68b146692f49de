"""`modelbuild verify-release ARCHIVE`: check a release archive against its manifest and provenance;
with --rebuild, rebuild it from the workspace with an empty cache and compare every file."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from buildsys.rule_api import Command, Host, UserError

from . import archive as release_archive
from .check import check, compare_rebuilt, summary_rows


def _arguments(v: argparse.ArgumentParser) -> None:
    v.add_argument("archive", help="the release's .tar.gz")
    v.add_argument("--key", metavar="PUB", help="ed25519 public key (PEM) the provenance must be signed with")
    v.add_argument("--rebuild", action="store_true",
                   help="also rebuild it from this workspace with an empty cache and compare every file")
    v.add_argument("-j", "--jobs", type=int, default=2, help="worker processes for --rebuild")


def verify_release(args, console: Console, host: Host) -> int:
    archive = Path(args.archive)
    try:
        checked = check(archive, Path(args.key) if args.key else None)
    except ValueError as err:
        raise UserError(str(err)) from None
    release, source = checked.manifest.get("release", {}), checked.manifest.get("source", {})
    commit = (f"commit {source.get('commit')}{' (dirty)' if source.get('dirty') else ''}" if source.get("vcs")
              else "not from a git repository")
    console.print(f"[bold]{escape(str(release.get('label')))}[/] version {escape(str(release.get('version')))}, "
                  f"{escape(commit)}; {len(checked.files)} files, "
                  f"provenance {'signed' + (' (signature verified)' if args.key else ' (pass --key to check the signature)') if checked.signed else 'unsigned'}",
                  soft_wrap=True)
    for path, fmt, size, check_text in summary_rows(checked.manifest):  # whole paths, however narrow the terminal
        console.print(f"  {escape(path)}  [dim]{fmt}, {size} bytes, {escape(check_text)}[/]", soft_wrap=True)
    problems = list(checked.problems)
    if args.rebuild:
        with tempfile.TemporaryDirectory(prefix="modelbuild-rebuild-") as tmp:
            placed = host.build([release["label"]], cache_dir=Path(tmp) / "cache", out_dir=Path(tmp) / "out",
                                jobs=args.jobs)
            if placed is None:
                problems.append(f"the rebuild of {release['label']} failed")
            else:
                rebuilt_path = placed[0]
                rebuilt, _ = release_archive.read(rebuilt_path)
                problems += compare_rebuilt(checked.files, rebuilt, checked.signed)
                rebuilt_sha = release_archive.sha256(rebuilt_path.read_bytes())
                same = rebuilt_sha == release_archive.sha256(archive.read_bytes())
                console.print(f"rebuilt with an empty cache: archive sha256 {rebuilt_sha} "
                              f"({'identical' if same else 'differs'})", soft_wrap=True)
    for problem in problems:
        console.print(f"[red]MISMATCH[/] {escape(problem)}", soft_wrap=True)
    if problems:
        console.print(f"[bold red]{archive}: {len(problems)} problem(s)[/]", soft_wrap=True)
        return 1
    checks = "every file matches its manifest and provenance" + (", and the rebuild is byte-identical" if args.rebuild else "")
    console.print(f"[green]OK[/] {escape(str(archive))}: {checks}", soft_wrap=True)
    return 0


VERIFY_RELEASE = Command("verify-release", "check a release archive against its manifest and provenance", _arguments,
                         verify_release)

"""The example workspace's //:release, built as a user would: two clean clones of this commit in
two directories, each with an empty cache, in different time zones, umasks and locales.

Prints the cold and the cached build time, the archive's size and sha256 from both trees, and the
time of verify-release with and without --rebuild. Run: .venv/bin/python bench/release_times.py
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TREES = [("one", {"TZ": "UTC", "LC_ALL": "C.UTF-8"}, 0o022), ("elsewhere/two", {"TZ": "Asia/Kolkata", "LC_ALL": "C"}, 0o077)]


def run(cwd: Path, args: list[str], env: dict, umask: int) -> float:
    full = {k: v for k, v in os.environ.items() if k != "MODELBUILD_CACHE_DIR"} | env
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "modelbuild", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, umask=umask)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed in {cwd}:\n{proc.stdout}\n{proc.stderr}")
    return seconds


def main() -> None:
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"commit {commit}")
    with tempfile.TemporaryDirectory(prefix="modelbuild-release-") as tmp:
        shas = []
        for where, env, umask in TREES:
            tree = Path(tmp) / where
            subprocess.run(["git", "clone", "-q", str(REPO), str(tree)], check=True)
            subprocess.run(["git", "-C", str(tree), "checkout", "-q", commit], check=True)  # one commit for both
            cold = run(tree, ["build", "//:release"], env, umask)
            cached = run(tree, ["build", "//:release"], env, umask)
            archive = tree / "out" / "release.tar.gz"
            sha = hashlib.sha256(archive.read_bytes()).hexdigest()
            shas.append(sha)
            print(f"{where:14} TZ={env['TZ']:13} umask {umask:04o}: cold {cold:6.1f} s, cached {cached:4.1f} s "
                  f"({cached / cold:.3f} of cold), {archive.stat().st_size:,} bytes, sha256 {sha}")
        verify = run(tree, ["verify-release", str(archive)], env, umask)
        rebuild = run(Path(tmp) / TREES[0][0], ["verify-release", str(archive), "--rebuild"], TREES[0][1], TREES[0][2])
        print(f"verify-release {verify:.1f} s; with --rebuild {rebuild:.1f} s ({rebuild / cold:.2f} of a cold build)")
        print("the two trees' archives are " + ("IDENTICAL" if len(set(shas)) == 1 else "DIFFERENT"))


if __name__ == "__main__":
    main()

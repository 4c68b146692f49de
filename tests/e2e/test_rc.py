"""Options checked in once, as .bazelrc: .modelbuildrc at the workspace root and ~/.modelbuildrc,
`--config NAME` groups, and one order of precedence: the command line, then the environment, then
the workspace's file, then the user's. --announce-rc says which came from where."""
from __future__ import annotations

from pathlib import Path

from helpers import run_cli


def cli(ws: Path, home: Path, *args: str, **env: str):
    return run_cli(ws, *args, env={"HOME": str(home), **env})


def is_labels(proc) -> bool:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.split() == ["//:mlp", "//:mlp_pt2"]


def test_each_level_of_precedence_and_a_config_group(tiny_ws: Path, tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    assert not is_labels(cli(tiny_ws, home, "query", "//:mlp_pt2", "--deps"))  # long, by default
    (home / ".modelbuildrc").write_text("query --output=label  # the user's\n")
    assert is_labels(cli(tiny_ws, home, "query", "//:mlp_pt2", "--deps"))
    (tiny_ws / ".modelbuildrc").write_text("# the team's\nquery --output=long\nquery:ci --output=label\n")
    assert not is_labels(cli(tiny_ws, home, "query", "//:mlp_pt2", "--deps"))  # the workspace's file beats the user's
    assert is_labels(cli(tiny_ws, home, "query", "//:mlp_pt2", "--deps", "--config", "ci"))  # a group comes after
    assert not is_labels(cli(tiny_ws, home, "query", "//:mlp_pt2", "--deps", "--config", "ci", "--output", "long"))
    # --config before the command and after it: both groups apply, in the order given
    (tiny_ws / ".modelbuildrc").write_text("query --output=long\nquery:ci --output=label\nquery:deps --deps\n")
    assert is_labels(cli(tiny_ws, home, "--config", "ci", "query", "//:mlp_pt2", "--config", "deps"))

    (tiny_ws / ".modelbuildrc").write_text("build --keep-going --cache-dir=elsewhere\nbuild:ci -j 1\n")
    proc = cli(tiny_ws, home, "build", "//:mlp_pt2", "--announce-rc", "--config=ci", "--keep-going",
               MODELBUILD_CACHE_DIR=str(tiny_ws / "cache"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(line for line in proc.stderr.splitlines() if line.startswith("INFO:")) == [
        "INFO: .modelbuildrc:1 (build): --cache-dir=elsewhere, overridden by $MODELBUILD_CACHE_DIR",
        "INFO: .modelbuildrc:1 (build): --keep-going, overridden by the command line",
        "INFO: .modelbuildrc:2 (build:ci): --jobs=1",
    ], proc.stderr
    assert "0 actions run" in proc.stdout and not (tiny_ws / "elsewhere").exists()  # the environment's cache
    proc = cli(tiny_ws, home, "build", "//:mlp_pt2", "--announce-rc")
    assert "INFO: .modelbuildrc:1 (build): --cache-dir=elsewhere" in proc.stderr.splitlines()
    assert (tiny_ws / "elsewhere" / "cas").is_dir(), proc.stdout + proc.stderr  # without it, the file's


def test_a_bad_line_names_its_file_and_line(tiny_ws: Path, tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    for text, message in (
        ("build -k\nbuild --kep-going\n", "ERROR: .modelbuildrc:2: unknown option '--kep-going' for 'build' "
                                          "(did you mean '--keep-going'?)"),
        ("biuld -k\n", "ERROR: .modelbuildrc:1: unknown command 'biuld'; lines start with one of: build, "),
        ("build --jobs=many\n", "ERROR: .modelbuildrc:1: argument -j/--jobs: invalid int value: 'many'"),
        ("build //:mlp_pt2\n", "ERROR: .modelbuildrc:1: an rc file gives options, not targets"),
    ):
        (tiny_ws / ".modelbuildrc").write_text(text)
        proc = cli(tiny_ws, home, "query")
        assert proc.returncode == 2 and proc.stderr.startswith(message), (text, proc.stderr)
    (tiny_ws / ".modelbuildrc").unlink()
    (home / ".modelbuildrc").write_text("query --outptu=label\n")
    proc = cli(tiny_ws, home, "query")
    assert proc.returncode == 2 and proc.stderr.startswith("ERROR: ~/.modelbuildrc:1: unknown option"), proc.stderr
    (home / ".modelbuildrc").write_text("")
    proc = cli(tiny_ws, home, "build", "--config", "ci")
    assert proc.returncode == 2 and "--config ci: no 'build:ci' line in .modelbuildrc or ~/.modelbuildrc" in proc.stderr

"""The command line as a Bazel user reads it: global flags anywhere, --version, relative labels from
a package's directory, patterns by default, and messages that say what to type instead."""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from helpers import run_cli


def labels(proc) -> list[str]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.split()


def test_version_names_modelbuild_and_the_toolchain_on_one_line(tmp_path: Path):
    proc = run_cli(tmp_path, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1
    for name in ("modelbuild", "torch", "executorch", "coremltools"):
        assert f"{name} {metadata.version(name)}" in proc.stdout, proc.stdout


def test_relative_labels_and_patterns_resolve_against_the_current_directory(example):
    ws, _ = example
    everything = labels(run_cli(ws, "query", "//...", "--output", "label"))
    assert labels(run_cli(ws, "query", "--output", "label")) == everything  # //... by default, as build
    vision = ws / "models" / "vision"
    in_vision = [label for label in everything if label.startswith("//models/vision:")]
    assert labels(run_cli(vision, "query", "...", "--output", "label")) == in_vision
    assert labels(run_cli(vision, "query", ":all", "--output", "label")) == in_vision
    assert labels(run_cli(vision, "query", ":convnet_pt2", "convnet", "--output", "label")) == [
        "//models/vision:convnet", "//models/vision:convnet_pt2"]
    assert labels(run_cli(ws / "models", "query", "vision:convnet", "--output", "label")) == ["//models/vision:convnet"]
    assert labels(run_cli(ws / "models", "query", "vision/...", "--output", "label")) == in_vision
    shown = run_cli(vision, "show", ":convnet_pt2")
    assert shown.returncode == 0 and "//models/vision:convnet_pt2" in shown.stdout, shown.stdout + shown.stderr


def test_a_missing_target_says_what_the_package_has_and_how_to_name_all_of_it(example):
    ws, _ = example
    proc = run_cli(ws, "query", "//models/vision")
    assert proc.returncode == 2
    assert "no target 'vision' in package '//models/vision'" in proc.stderr
    assert "//models/vision:all" in proc.stderr and "//models/vision/..." in proc.stderr, proc.stderr
    proc = run_cli(ws, "show", "//:nope")
    assert proc.returncode == 2 and "no target 'nope' in package '//'; it has convrelu, " in proc.stderr, proc.stderr
    assert re.search(r" and \d+ more$", proc.stderr.strip()), proc.stderr
    proc = run_cli(ws, "show", "//:transformer_pt")
    assert proc.returncode == 2 and "did you mean 'transformer_pt2'?" in proc.stderr, proc.stderr


def test_counts_are_singular_for_one_and_clean_says_when_there_was_nothing(tiny_ws: Path):
    proc = run_cli(tiny_ws, "build", "//:mlp_pt2", "-j", "1", "--build-events", "events.jsonl")  # the full path
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^1 target up to date, 0 actions run \(\d+ cached\)", proc.stdout, re.M), proc.stdout
    proc = run_cli(tiny_ws, "build", "//:mlp_pt2", "-j", "1")  # twice: the second from the no-op stamp
    proc = run_cli(tiny_ws, "build", "//:mlp_pt2", "-j", "1")
    assert re.search(r"^1 target up to date", proc.stdout, re.M), proc.stdout
    assert run_cli(tiny_ws, "clean").stdout.startswith(f"removed {tiny_ws / 'out'}")
    assert run_cli(tiny_ws, "clean").stdout.startswith(f"nothing to remove: there is no {tiny_ws / 'out'}")


def test_help_says_the_defaults_and_what_each_option_does(tmp_path: Path):
    build = run_cli(tmp_path, "build", "--help").stdout
    assert re.search(r"default: one per core .*: \d+ here", " ".join(build.split())), build
    query = " ".join(run_cli(tmp_path, "query", "--help").stdout.split())
    assert "label: one label per line" in query and "(default //...)" in query, query


def test_show_and_query_name_each_action_by_the_same_id(example):
    ws, _ = example
    shown = run_cli(ws, "show", "//:transformer_xnnpack")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    ids = re.findall(r"action ([0-9a-f]{12})", shown.stdout)
    queried = run_cli(ws, "query", "--actions", "//:transformer_xnnpack")
    assert len(ids) == 3 and sorted(ids) == sorted(line.split()[1] for line in queried.stdout.splitlines()), (
        shown.stdout, queried.stdout)


def test_show_of_a_model_gives_its_declaration_files_and_what_is_built_from_it(example):
    ws, _ = example
    proc = run_cli(ws, "show", "//:transformer")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = " ".join(proc.stdout.split())
    assert 'entry = "models.transformer:Transformer"' in text, text
    assert re.search(r"sources: 3 files .*models/layers\.py sha256:[0-9a-f]{16}", text), text
    built = re.search(r"built from it: (\d+) targets", text)
    assert built and int(built.group(1)) >= 5, text
    assert "//:transformer_pt2 pt2_program() built" in text and "not built" not in text, text

"""What a build shows while it runs: the planned total, and a row per running action that says what
it is for (the model a shared export serves, how many targets share it) and for how long, no bar."""
from __future__ import annotations

import io

from rich.console import Console

from buildsys.cli.console import BuildConsole
from buildsys.labels import Label
from buildsys.rule_api import Action


def test_progress_shows_the_planned_total_and_what_each_running_action_is_for():
    out = io.StringIO()
    ui = BuildConsole(Console(file=out, force_terminal=True, width=100, color_system=None))
    export = Action("a" * 64, "export", {}, {}, ("program.pt2",), "r", owners={Label("", "x_pt2"), Label("", "x_pte")},
                    subject=Label("", "x"))
    partition = Action("b" * 64, "partition", {}, {}, ("program.pte",), "r", owners={Label("", "x_pte")})
    ui.on_progress("planned", 3)
    ui.on_progress("started", export)
    ui.on_progress("started", partition)
    ui.progress.refresh()
    ui.progress.stop()
    rows = [line for line in out.getvalue().replace("\r", "\n").splitlines() if "0:00:00" in line][-3:]
    assert "building" in rows[0] and "0/3" in rows[0]
    assert "export //:x (for 2 targets)" in rows[1] and "/" not in rows[1].split(")")[-1]
    assert "partition //:x_pte" in rows[2] and "?" not in "".join(rows) and "━" not in rows[1] + rows[2]

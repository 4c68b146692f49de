"""What a build shows the user: live progress, each failure with its log, then a summary."""
from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from ..build import BuildSummary
from ..exec.scheduler import CACHED, FAILED, RAN, SKIPPED, Outcome
from ..rule_api import Action
from ..units import count, human_bytes

_LOG_TAIL = 40



def warning(text: str, source: str | None = None) -> str:
    """The one shape of a warning, in the build's summary and in `show`: `WARNING: source: text`."""
    return f"[yellow]WARNING:[/] {escape(source) + ': ' if source else ''}{escape(text)}"

class _OverallOnly(ProgressColumn):
    """A column for the build's own row: an action's row has no amount done to show (no fake bars)."""

    def __init__(self, column: ProgressColumn):
        super().__init__()
        self.column = column

    def render(self, task):
        return self.column.render(task) if task.fields.get("overall") else Text("")


class BuildConsole:
    def __init__(self, console: Console, verbose: bool = False):
        self.console = console
        self.verbose = verbose
        # The build's row: actions done of those planned; a row per running action: what, and for how long.
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), _OverallOnly(BarColumn()),
            _OverallOnly(MofNCompleteColumn()), TimeElapsedColumn(), console=console, transient=True,
        )
        self._overall = None
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> "BuildConsole":
        return self

    def __exit__(self, *exc) -> None:
        if self._overall is not None:
            self.progress.stop()

    def on_progress(self, kind: str, item) -> None:
        if kind == "waiting":  # for another build of this workspace; before any progress
            self.console.print(f"[yellow]{escape(item)}[/]", soft_wrap=True)
            return
        if kind == "note":  # what the build does between its actions and its summary
            self.console.print(escape(item), style="dim", soft_wrap=True)
            return
        if kind == "planned":  # loaded and planned: a load error has printed alone
            self.progress.start()
            self._overall = self.progress.add_task("building", total=item, overall=True)
            return
        if kind == "started":
            action: Action = item
            self._tasks[action.id] = self.progress.add_task(f"  {escape(action.describe())}", total=None)
            return
        outcome: Outcome = item
        task = self._tasks.pop(outcome.action.id, None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.advance(self._overall)
        if outcome.status == FAILED:
            self.failure(outcome)
        elif outcome.status == RAN and (self.verbose or outcome.reasons):
            self.console.print(f"[green]ran[/] {outcome.action.step} {escape(str(outcome.action.label))} ({outcome.seconds:.1f}s)")
            for reason in outcome.reasons or []:
                self.console.print(f"    because {escape(reason)}", style="dim")

    def failure(self, outcome: Outcome) -> None:
        action = outcome.action
        owners = ", ".join(sorted(str(o) for o in action.owners))
        body = Text(outcome.error or "failed")
        if outcome.replayed is not None:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(outcome.replayed.at))
            body.append(f"\n\nThis is the failure recorded on {when} for exactly these inputs (that run took "
                        f"{outcome.replayed.seconds:.1f}s); it was not run again. Change an input, or build with "
                        "--retry-failed to rerun it.", style="yellow")
        if outcome.log and outcome.log.strip() and (outcome.show_log or self.verbose):
            lines = outcome.log.rstrip().splitlines()
            shown = lines if self.verbose else lines[-_LOG_TAIL:]
            head = f"\n\n-- action log (last {len(shown)} of {len(lines)} lines) --\n" if len(shown) < len(lines) else "\n\n-- action log --\n"
            body.append(head + "\n".join(shown), style="dim")
        if outcome.log_path is not None:
            body.append(f"\n\nfull log: {outcome.log_path}", style="dim")
        cached = " [yellow](cached failure)[/]" if outcome.replayed is not None else ""
        where = f" ({escape(action.where)})" if action.where else ""
        self.console.print(Panel(body, title=f"[red]FAILED[/]{cached} {action.step} {escape(owners)}{where}",
                                 title_align="left", border_style="red"))

    def warn(self, text: str, source: str | None = None) -> None:
        self.console.print(warning(text, source), soft_wrap=True)

    def warnings(self, s: BuildSummary) -> int:
        """Every step's warnings for this build's actions, whether they ran now or came from the cache,
        and what was wrong with the cache (and how the build got past it)."""
        shown = s.store_warnings if len(s.store_warnings) <= 5 else s.store_warnings[:3]
        for text in shown:
            self.warn(text, "cache")
        if len(shown) < len(s.store_warnings):  # a cache of an older format: every record at once
            self.warn(f"... and {len(s.store_warnings) - len(shown)} more like these", "cache")
        for text in s.remote_warnings:  # each names the server; the build went on without it
            self.warn(text)
        found = s.state.warnings()
        for outcome, text in found:
            owners = ", ".join(sorted(str(o) for o in outcome.action.owners))
            self.console.print(warning(text, f"{owners} ({outcome.action.step})"),
                               soft_wrap=True)
        return len(found) + len(s.store_warnings) + len(s.remote_warnings)

    def remote(self, s: BuildSummary) -> None:
        r = s.remote
        rejected = f", {r.rejected} rejected (bad digest or signature)" if r.rejected else ""
        self.console.print(f"remote cache {escape(s.remote_url)}: {r.hits} hits, {human_bytes(r.bytes_downloaded)} "
                           f"downloaded, {human_bytes(r.bytes_uploaded)} uploaded ({r.records_uploaded} results)"
                           f"{rejected}", soft_wrap=True)

    def summary(self, s: BuildSummary) -> None:
        ran, cached, failed, skipped = (s.count(x) for x in (RAN, CACHED, FAILED, SKIPPED))
        n = len(s.targets)
        warned = self.warnings(s)
        if s.removed:
            self.console.print(f"removed {len(s.removed)} stale output(s) that no target declares any more: "
                               + escape(", ".join(str(p) for p in s.removed)), soft_wrap=True)
        if s.remote is not None:
            self.remote(s)
        warnings = f", {count(warned, 'warning')}" if warned else ""
        if s.ok and ran == 0:
            self.console.print(f"[green]{count(n, 'target')} up to date[/], {count(0, 'action')} run ({cached} cached){warnings} "
                               f"in {s.seconds:.2f}s")
            return
        replayed = s.state.replayed()
        failed_text = f"{failed} failed" + (f" ({replayed} replayed from the failure cache)" if replayed else "")
        parts = f"{count(ran, 'action')} run, {cached} cached, {failed_text}" + (f", {skipped} skipped" if skipped else "") + warnings
        if s.ok:
            where = "" if s.executor == "local" else f" on {s.executor}"
            self.console.print(f"[green]Built {count(n, 'target')}[/]: {parts}{where} in {s.seconds:.1f}s")
        else:
            names = escape(", ".join(str(l) for l in s.failed_targets[:10])) + (" ..." if len(s.failed_targets) > 10 else "")
            self.console.print(
                f"[red]Build failed[/]: {len(s.failed_targets)} of {count(n, 'target')} failed ({names}); {parts} in {s.seconds:.1f}s"
            )

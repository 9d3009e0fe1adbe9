"""How `benchwatch wait` shows itself: a rich live view in a terminal, plain event lines elsewhere, JSON lines
with `--json`; then the final table per agent, failures by type, dashboard links and the verdict."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Literal, TextIO

from pydantic import BaseModel, ConfigDict
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.logging import RichHandler
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from watcher.cli.wait.defaults import EXIT_OK, EXIT_UNKNOWN, EXIT_USAGE
from watcher.cli.wait.model import ThresholdMiss, WaitProgress, WaitResult, WaitView
from watcher.config.durations import format_duration_ms
from watcher.core.eventlines import event_line
from watcher.core.events import Counters, Event, JobProgress
from watcher.core.summary import AgentSummary, FailureGroup, JobSummary

PLAIN_WIDTH = 120
BAR_WIDTH = 36


class ThresholdReport(BaseModel):
    """The thresholds asked for, whether they were judged (only on a completed job), and those missed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_score: float | None
    max_failure_rate: float | None
    checked: bool
    missed: tuple[ThresholdMiss, ...]


class SummaryLine(BaseModel):
    """The last line of `benchwatch wait --json`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["summary"] = "summary"
    job_id: str | None
    job_name: str | None
    state: str | None
    exit_code: int
    reason: str
    agents: tuple[AgentSummary, ...]
    failure_rate: float | None
    failures: tuple[FailureGroup, ...]
    thresholds: ThresholdReport
    failure_reason: str | None
    counts: Counters | None
    elapsed_ms: int
    dashboard_url: str | None


def summary_line(result: WaitResult) -> str:
    """The final JSON summary of a wait, one line."""
    summary = result.summary
    return SummaryLine(
        job_id=result.job_id,
        job_name=result.job_name,
        state=result.state,
        exit_code=result.exit_code,
        reason=result.reason,
        agents=summary.agents if summary else (),
        failure_rate=summary.failure_rate if summary else None,
        failures=summary.failures if summary else (),
        thresholds=ThresholdReport(
            min_score=result.thresholds.min_score,
            max_failure_rate=result.thresholds.max_failure_rate,
            checked=result.thresholds_checked,
            missed=result.misses,
        ),
        failure_reason=result.job.failure_reason if result.job else None,
        counts=Counters(**{key: getattr(summary, key) for key in Counters.model_fields}) if summary else None,
        elapsed_ms=result.elapsed_ms,
        dashboard_url=summary.dashboard_url if summary else None,
    ).model_dump_json()


def view_for_stdout(*, json_lines: bool) -> WaitView:
    """JSON lines when asked; the live view when stdout is a terminal; plain lines otherwise."""
    if json_lines:
        return JsonView()
    if sys.stdout.isatty():
        return RichView(Console())
    return PlainView()


class JsonView:
    """`--json`: each event's JSON on its own line, then one summary line; diagnostics go to stderr only."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def events(self, events: Sequence[Event]) -> None:
        """One JSON line per event."""
        for event in events:
            self.out.write(event.model_dump_json() + "\n")
        self.out.flush()

    def progress(self, progress: WaitProgress) -> None:
        """Events tell progress already (`job.progress`)."""

    def warning(self, message: str) -> None:
        """On stderr."""
        _diagnostic(self.err, "warning", message)

    def finished(self, result: WaitResult) -> None:
        """The summary line; an error end (exit 2 or 4) also as one error line on stderr."""
        self.out.write(summary_line(result) + "\n")
        self.out.flush()
        _error_line(self.err, result)

    def close(self) -> None:
        """Nothing to release."""


class PlainView:
    """Not a terminal: one `event_line` per event as it happens, then the final tables as plain text."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def events(self, events: Sequence[Event]) -> None:
        """One line per event."""
        for event in events:
            self.out.write(event_line(event) + "\n")
        self.out.flush()

    def progress(self, progress: WaitProgress) -> None:
        """`job.progress` lines tell it."""

    def warning(self, message: str) -> None:
        """On stderr."""
        _diagnostic(self.err, "warning", message)

    def finished(self, result: WaitResult) -> None:
        """The final tables and the verdict on stdout; an error end (exit 2 or 4) also on stderr."""
        console = Console(width=PLAIN_WIDTH, color_system=None, markup=False, emoji=False, highlight=False)
        with console.capture() as captured:
            console.print(final_report(result))
        # rich pads every line of a table to its width: noise in a CI log
        self.out.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
        self.out.flush()
        _error_line(self.err, result)

    def close(self) -> None:
        """Nothing to release."""


class RichView:
    """A terminal: a live table with one progress bar per agent; events print above it, then the final report.

    While live, the `benchwatch` loggers print through the same console, so a retry warning does not tear the view.
    """

    def __init__(self, console: Console, err: TextIO | None = None) -> None:
        self.console = console
        self.err = err or sys.stderr
        self._live: Live | None = None
        self._log_handler: RichHandler | None = None
        self._logger_propagated = True

    def events(self, events: Sequence[Event]) -> None:
        """Above the live view, except `job.progress` (the bars show it)."""
        self._start()
        for event in events:
            if not isinstance(event, JobProgress):
                self.console.print(Text(event_line(event)))

    def progress(self, progress: WaitProgress) -> None:
        """Redraw the bars."""
        self._start().update(live_table(progress), refresh=True)

    def warning(self, message: str) -> None:
        """Above the live view, in yellow."""
        self._start()
        self.console.print(Text(f"warning: {message}", style="yellow"))

    def finished(self, result: WaitResult) -> None:
        """Stop the live view, then the final report; an error end (exit 2 or 4) also on stderr."""
        self.close()
        self.console.print(final_report(result))
        _error_line(self.err, result)

    def close(self) -> None:
        """Stop the live view and give the loggers back."""
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._log_handler is not None:
            logger = logging.getLogger("benchwatch")
            logger.removeHandler(self._log_handler)
            logger.propagate = self._logger_propagated
            self._log_handler = None

    def _start(self) -> Live:
        if self._live is None:
            logger = logging.getLogger("benchwatch")
            self._log_handler = RichHandler(console=self.console, show_time=False, show_path=False, markup=False)
            self._logger_propagated = logger.propagate
            logger.addHandler(self._log_handler)
            logger.propagate = False
            self._live = Live(
                console=self.console, auto_refresh=False, transient=False, redirect_stdout=False, redirect_stderr=False
            )
            self._live.start()
        return self._live


def live_table(progress: WaitProgress) -> Table:
    """The live view: one row, with its bar, per agent."""
    title = f"{progress.job_name} · {progress.state} · waiting {_duration(progress.elapsed_ms)}"
    table = Table(title=Text(title), box=box.SIMPLE, title_justify="left")
    for column in ("agent", "model", "progress", "done", "failures", "avg score", "elapsed"):
        table.add_column(column, justify="right" if column in ("done", "failures", "avg score", "elapsed") else "left")
    for agent in progress.agents:
        expected = "?" if agent.expected is None else str(agent.expected)
        failures = agent.n_failed + agent.n_timeout
        table.add_row(
            Text(agent.name),
            Text(agent.model_name or "—"),
            ProgressBar(total=agent.expected or None, completed=agent.done, width=BAR_WIDTH),
            Text(f"{agent.done}/{expected}"),
            Text(str(failures), style="red" if failures else ""),
            Text(_score(agent.average_score)),
            Text(_duration(agent.duration_ms)),
        )
    return table


def final_report(result: WaitResult) -> RenderableType:
    """The end: per-agent table, failure reasons by type, dashboard links, and the verdict line."""
    parts: list[RenderableType] = []
    if result.summary is not None:
        parts.append(agents_table(result.summary))
        parts.extend(_failure_lines(result.summary.failures))
        parts.extend(_link_lines(result.summary))
    style = "green" if result.exit_code == EXIT_OK else "red"
    parts.append(Text(f"exit {result.exit_code}: {result.reason}", style=style))
    return Group(*parts)


def agents_table(summary: JobSummary) -> Table:
    """One row per agent: model, average score, completed / failed / timed out, duration."""
    title = f"{summary.job_name} ({summary.job_id}): {summary.state}"
    if summary.failure_reason:
        title += f" — {summary.failure_reason}"
    table = Table(title=Text(title), box=box.SIMPLE, title_justify="left")
    for column in ("agent", "model", "avg score", "completed", "failed", "timed out", "duration"):
        table.add_column(column, justify="left" if column in ("agent", "model") else "right")
    for agent in summary.agents:
        table.add_row(
            Text(agent.agent_name or agent.benchmark_run_id),
            Text(agent.model_name or "—"),
            Text(_score(agent.average_score)),
            Text(str(agent.n_completed)),
            Text(str(agent.n_failed)),
            Text(str(agent.n_timeout)),
            Text(_duration(agent.duration_ms)),
        )
    return table


def _failure_lines(groups: Sequence[FailureGroup]) -> list[Text]:
    if not groups:
        return []
    lines = [Text("failures by type:", style="bold")]
    for group in groups:
        lines.append(Text(f"  {group.exception_type} ×{group.count}", style="red"))
        for example in group.examples:
            lines.append(Text(f"    {example.scenario_name} ({example.agent_name or '?'}): {example.message}"))
            if example.url:
                lines.append(Text(f"      {example.url}", style="dim"))
        if group.count > len(group.examples):
            lines.append(Text(f"    … and {group.count - len(group.examples)} more", style="dim"))
    return lines


def _link_lines(summary: JobSummary) -> list[Text]:
    if not summary.agents:
        return []
    return [Text("dashboard:", style="bold")] + [
        Text(f"  {agent.agent_name or agent.benchmark_run_id}: {agent.url}") for agent in summary.agents
    ]


def _error_line(err: TextIO, result: WaitResult) -> None:
    """Exit 4 (could not tell) and 2 (the JUnit file could not be written) also as one line on stderr."""
    if result.exit_code in (EXIT_UNKNOWN, EXIT_USAGE):
        _diagnostic(err, "error", result.reason)


def _diagnostic(err: TextIO, level: str, message: str) -> None:
    err.write(f"benchwatch: {level}: {message}\n")
    err.flush()


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _duration(ms: int | None) -> str:
    return "—" if ms is None else format_duration_ms(ms // 1000 * 1000)

"""How `benchwatch wait` shows itself: a rich live view in a terminal, plain event lines elsewhere, JSON lines
with `--json`; then the final table per agent, failures by type, dashboard links and the verdict."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Literal, TextIO

from pydantic import BaseModel, ConfigDict
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.logging import RichHandler
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from watcher.cli.retry_status import status_line
from watcher.cli.wait.defaults import EXIT_OK, EXIT_UNKNOWN, EXIT_USAGE
from watcher.cli.wait.model import AgentProgress, RunningScenario, ThresholdMiss, WaitProgress, WaitResult, WaitView
from watcher.config.durations import format_duration_ms
from watcher.core.eventlines import event_line
from watcher.core.events import Counters, Event, JobCompared, JobProgress, WatcherApiUnreachable
from watcher.core.failureclass import FailureCounts
from watcher.core.printable import printable
from watcher.core.summary import AgentSummary, FailureGroup, JobSummary

PLAIN_WIDTH = 120
BAR_WIDTH = 30
RUNNING_SHOWN = 8  # scenarios running now, listed under the bars; the rest are counted
PASSED_NOTE = "passed: completed with score 1.0; score < 1, failed: JUnit failures; timed out: JUnit errors"


class WaitAgent(AgentSummary):
    """A row of the final table and of the summary line: the agent's summary, and how many of its scenarios
    passed (completed with score 1.0, as rl-cli and the JUnit file count them)."""

    n_passed: int
    pass_rate: float | None  # passed / done (completed, failed, timed out); None when nothing is done


def wait_agents(summary: JobSummary, passed: Mapping[str, int]) -> tuple[WaitAgent, ...]:
    """The summary's agents with their passes."""
    rows = []
    for agent in summary.agents:
        n_passed = passed.get(agent.benchmark_run_id, 0)
        done = agent.n_completed + agent.n_failed + agent.n_timeout
        rate = round(n_passed / done, 6) if done else None
        rows.append(WaitAgent(**agent.model_dump(), n_passed=n_passed, pass_rate=rate))
    return tuple(rows)


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
    agents: tuple[WaitAgent, ...]
    pass_rate: float | None
    failure_rate: float | None
    failures: tuple[FailureGroup, ...]
    failures_by_class: FailureCounts | None
    thresholds: ThresholdReport
    failure_reason: str | None
    counts: Counters | None
    elapsed_ms: int
    dashboard_url: str | None


def summary_line(result: WaitResult) -> str:
    """The final JSON summary of a wait, one line."""
    summary = result.summary
    agents = wait_agents(summary, result.passed) if summary else ()
    return SummaryLine(
        job_id=result.job_id,
        job_name=result.job_name,
        state=result.state,
        exit_code=result.exit_code,
        reason=result.reason,
        agents=agents,
        pass_rate=_job_pass_rate(agents),
        failure_rate=summary.failure_rate if summary else None,
        failures=summary.failures if summary else (),
        failures_by_class=summary.failures_by_class if summary else None,
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


def _job_pass_rate(agents: Sequence[WaitAgent]) -> float | None:
    done = sum(agent.n_completed + agent.n_failed + agent.n_timeout for agent in agents)
    return round(sum(agent.n_passed for agent in agents) / done, 6) if done else None


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
        """One line per event (but the outage that ends the wait: the verdict says it)."""
        for event in events:
            if not isinstance(event, WatcherApiUnreachable):
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
        _error_line(self.err, result, shown_on=self.out)

    def close(self) -> None:
        """Nothing to release."""


class RichView:
    """A terminal: a live table with one progress bar per agent, the scenarios running now and a status line (API
    trouble, retries); events print above it, then the final report.

    While live, the `benchwatch` loggers print through the same console, so a warning does not tear the view, and
    the client's retries land in the status line instead of a line each.
    """

    def __init__(self, console: Console, err: TextIO | None = None) -> None:
        self.console = console
        self.err = err or sys.stderr
        self._live: Live | None = None
        self._log_handler: RichHandler | None = None
        self._logger_propagated = True
        self._progress: WaitProgress | None = None
        self._status: str | None = None

    def events(self, events: Sequence[Event]) -> None:
        """Above the live view, except `job.progress` (the bars show it) and the outage (the verdict says it)."""
        self._start()
        for event in events:
            if not isinstance(event, JobProgress | WatcherApiUnreachable):
                self.console.print(_text(event_line(event)))

    def progress(self, progress: WaitProgress) -> None:
        """Redraw the bars; a poll that succeeded clears the status line."""
        self._progress, self._status = progress, None
        self._redraw()

    def warning(self, message: str) -> None:
        """In the status line, under the bars, until a poll succeeds."""
        self.status(f"{message}; still waiting")

    def status(self, text: str) -> None:
        """Show `text` in the status line."""
        self._status = text
        self._redraw()

    def finished(self, result: WaitResult) -> None:
        """Stop the live view, then the final report; an error end (exit 2 or 4) also on stderr when elsewhere."""
        self.close()
        self.console.print(final_report(result))
        _error_line(self.err, result, shown_on=self.console.file)

    def close(self) -> None:
        """Stop the live view and give the loggers back."""
        if self._live is not None:
            self._live.update(self._renderable(with_status=False), refresh=True)  # the status was for then only
            self._live.stop()
            self._live = None
        if self._log_handler is not None:
            logger = logging.getLogger("benchwatch")
            logger.removeHandler(self._log_handler)
            logger.propagate = self._logger_propagated
            self._log_handler = None
        if (line := status_line()) is not None:
            line.sink = None

    def _redraw(self) -> None:
        self._start().update(self._renderable(with_status=True), refresh=True)

    def _renderable(self, *, with_status: bool) -> RenderableType:
        parts: list[RenderableType] = []
        if self._progress is not None:
            parts.append(live_table(self._progress))
            parts.extend(running_lines(self._progress.running))
        if with_status and self._status:
            parts.append(_text(self._status, style="yellow"))
        return Group(*parts)

    def _start(self) -> Live:
        if self._live is None:
            logger = logging.getLogger("benchwatch")
            self._log_handler = RichHandler(console=self.console, show_time=False, show_path=False, markup=False)
            self._log_handler.setLevel(logging.WARNING)  # retries (INFO) go to the status line
            self._logger_propagated = logger.propagate
            logger.addHandler(self._log_handler)
            logger.propagate = False
            if (line := status_line()) is not None:
                line.sink = self.status
            self._live = Live(
                console=self.console, auto_refresh=False, transient=False, redirect_stdout=False, redirect_stderr=False
            )
            self._live.start()
        return self._live


def running_lines(running: Sequence[RunningScenario]) -> list[Text]:
    """The scenarios running now, longest first, with how long each has run."""
    if not running:
        return []
    lines = [_text(f"running now ({len(running)}):", style="bold")]
    shown = running[:RUNNING_SHOWN]
    width = max(len(item.agent) for item in shown)
    for item in shown:
        lines.append(_text(f"  {_duration(item.elapsed_ms):>8}  {item.agent:<{width}}  {item.scenario}"))
    if len(running) > RUNNING_SHOWN:
        lines.append(_text(f"  … and {len(running) - RUNNING_SHOWN} more", style="dim"))
    return lines


def live_table(progress: WaitProgress) -> Table:
    """The live view: one row, with its bar, per agent."""
    title = f"{progress.job_name} · {progress.state} · waiting {_duration(progress.elapsed_ms)}"
    table = Table(title=_text(title), box=box.SIMPLE, title_justify="left")
    for column in ("agent", "model", "progress", "done", "failures", "score", "pass rate", "elapsed"):
        table.add_column(column, justify="left" if column in ("agent", "model", "progress") else "right")
    for agent in progress.agents:
        expected = "?" if agent.expected is None else str(agent.expected)
        failures = agent.n_failed + agent.n_timeout
        table.add_row(
            _text(agent.name),
            _text(agent.model_name or "—"),
            ProgressBar(total=agent.expected or None, completed=agent.done, width=BAR_WIDTH),
            _text(f"{agent.done}/{expected}"),
            _text(str(failures), style="red" if failures else ""),
            _text(_score(agent.score)),
            _text(_pass_rate(agent)),
            _text(_duration(agent.duration_ms)),
        )
    return table


def _pass_rate(agent: AgentProgress) -> str:
    rate = agent.pass_rate
    return "—" if rate is None else f"{rate:.0%} ({agent.n_passed}/{agent.n_judged})"


def final_report(result: WaitResult) -> RenderableType:
    """The end: per-agent table, failure reasons by type, dashboard links, and the verdict line."""
    parts: list[RenderableType] = []
    if result.summary is not None:
        parts.append(agents_table(result.summary, result.passed))
        parts.append(_text(PASSED_NOTE, style="dim"))
        parts.extend(_failure_lines(result.summary.failures, result.summary.failures_by_class.text()))
        parts.extend(_link_lines(result.summary))
    if result.comparison is not None:
        parts.extend(_power_lines(result.comparison))
    style = "green" if result.exit_code == EXIT_OK else "red"
    parts.append(_text(f"exit {result.exit_code}: {result.reason}", style=style))
    return Group(*parts)


def agents_table(summary: JobSummary, passed: Mapping[str, int]) -> Table:
    """One row per agent: model, score, pass rate, passed / score < 1 / failed / timed out, duration.

    Passed, score < 1 and failed split the scenarios as the JUnit file does (a pass, a `score` failure, a failure).
    """
    title = f"{summary.job_name} ({summary.job_id}): {summary.state}"
    if summary.failure_reason:
        title += f" — {summary.failure_reason}"
    table = Table(title=_text(title), box=box.SIMPLE, title_justify="left")
    columns = ("agent", "model", "score", "pass rate", "passed", "score < 1", "failed", "timed out", "duration")
    for column in columns:
        table.add_column(column, justify="left" if column in ("agent", "model") else "right")
    for agent in wait_agents(summary, passed):
        table.add_row(
            _text(agent.agent_name or agent.benchmark_run_id),
            _text(agent.model_name or "—"),
            _text(_score(agent.score)),
            _text("—" if agent.pass_rate is None else f"{agent.pass_rate:.0%}"),
            _text(str(agent.n_passed)),
            _text(str(max(0, agent.n_completed - agent.n_passed))),
            _text(str(agent.n_failed)),
            _text(str(agent.n_timeout)),
            _text(_duration(agent.duration_ms)),
        )
    return table


def _failure_lines(groups: Sequence[FailureGroup], by_class: str) -> list[Text]:
    if not groups:
        return []
    lines = [_text(f"failures by type: {by_class}" if by_class else "failures by type:", style="bold")]
    for group in groups:
        lines.append(_text(f"  {group.exception_type} ×{group.count} ({group.failure_class})", style="red"))
        for example in group.examples:
            lines.append(_text(f"    {example.scenario_name} ({example.agent_name or '?'}): {example.message}"))
            if example.url:
                lines.append(_text(f"      {example.url}", style="dim"))
        if group.count > len(group.examples):
            lines.append(_text(f"    … and {group.count - len(group.examples)} more", style="dim"))
    return lines


def _power_lines(comparison: JobCompared) -> list[Text]:
    """Each agent whose comparison could not have seen a `min_effect` drop, in words."""
    return [
        Text(f"vs {comparison.baseline_job_name}: {agent.agent_name}: {agent.power_warning}", style="yellow")
        for agent in comparison.agents
        if agent.power_warning
    ]


def _link_lines(summary: JobSummary) -> list[Text]:
    if not summary.agents:
        return []
    return [_text("dashboard:", style="bold")] + [
        _text(f"  {agent.agent_name or agent.benchmark_run_id}: {agent.url}") for agent in summary.agents
    ]


def _error_line(err: TextIO, result: WaitResult, *, shown_on: IO[str] | None = None) -> None:
    """Exit 4 (could not tell) and 2 (the JUnit file could not be written) also as one line on stderr — unless
    stderr is where the verdict line was just printed (the same terminal or file): an error is said once."""
    if result.exit_code in (EXIT_UNKNOWN, EXIT_USAGE) and not (shown_on is not None and _same_file(err, shown_on)):
        _diagnostic(err, "error", result.reason)


def _same_file(one: IO[str], other: IO[str]) -> bool:
    """Whether two streams write to the same file, terminal or pipe."""
    if one is other:
        return True
    try:
        first, second = os.fstat(one.fileno()), os.fstat(other.fileno())
    except (OSError, ValueError, AttributeError):  # io.StringIO and friends have no file
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _text(text: str, style: str = "") -> Text:
    """Rich text of API strings (job, agent, scenario names, failure messages) shown safely: `printable`."""
    return Text(printable(text), style=style)


def _diagnostic(err: TextIO, level: str, message: str) -> None:
    err.write(f"benchwatch: {level}: {printable(message)}\n")
    err.flush()


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _duration(ms: int | None) -> str:
    return "—" if ms is None else format_duration_ms(ms // 1000 * 1000)

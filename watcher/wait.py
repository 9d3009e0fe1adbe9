"""`benchwatch wait`: poll one job until it ends, judge it against thresholds, and exit with a code CI can branch on.

Every poll goes through `JobTracker.observe`, the one path from a snapshot to events. Time comes from an injected
clock and sleep, so tests move time instead of waiting for it. Output is a `WaitView`'s business (`wait_render`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from watcher.apihealth import ApiHealth
from watcher.client import RunloopClient
from watcher.clock import Clock, SystemClock
from watcher.commands import UsageError
from watcher.diff import JobMemory
from watcher.durations import format_duration_ms, parse_duration_ms
from watcher.errors import NotFoundError, RunloopApiError, TransientApiError
from watcher.events import Event
from watcher.junit import Verdict, write_junit
from watcher.models import BenchmarkJobView, JobState
from watcher.poll import fetch_snapshot, runs_to_follow
from watcher.scenarios import ScenarioRunStatus
from watcher.snapshot import Snapshot
from watcher.store import SQLiteStore
from watcher.summary import JobSummary, dashboard_url_for, summarize
from watcher.tracker import JobTracker

EXIT_OK: Final = 0
EXIT_JOB_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_THRESHOLD_MISSED: Final = 3
EXIT_UNKNOWN: Final = 4
EXIT_TIMEOUT: Final = 124
LATE_POLLS: Final = 3  # a completed job whose runs still lack outcomes is polled this many more times

DEFAULT_INTERVAL: Final = "10s"
DEFAULT_TIMEOUT: Final = "4h"
DEFAULT_GIVE_UP_AFTER: Final = "5m"
MIN_INTERVAL_MS: Final = 100  # a floor that keeps a typo (`--interval 1ms`) from hammering the API

Sleep = Callable[[float], Awaitable[None]]


class ThresholdMiss(BaseModel):
    """One threshold a completed job did not hold: which, for whom, the value and the limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: Literal["min_score", "max_failure_rate"]
    subject: str
    value: float | None
    limit: float
    message: str


class Thresholds(BaseModel):
    """What a completed job must achieve for exit code 0; None means not checked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_score: float | None = None
    max_failure_rate: float | None = None

    def misses(self, summary: JobSummary) -> tuple[ThresholdMiss, ...]:
        """The thresholds `summary` misses; empty when every one holds."""
        return (*self._score_misses(summary), *self._rate_misses(summary))

    def _score_misses(self, summary: JobSummary) -> list[ThresholdMiss]:
        limit = self.min_score
        if limit is None:
            return []
        if not summary.agents:
            return [ThresholdMiss(threshold="min_score", subject="job", value=None, limit=limit, message="no agent")]
        return [
            ThresholdMiss(
                threshold="min_score",
                subject=agent.agent_name or agent.benchmark_run_id,
                value=agent.average_score,
                limit=limit,
                message=f"{agent.agent_name or agent.benchmark_run_id} average score "
                f"{_score(agent.average_score)} < min-score {limit:g}",
            )
            for agent in summary.agents
            if agent.average_score is None or agent.average_score < limit
        ]

    def _rate_misses(self, summary: JobSummary) -> list[ThresholdMiss]:
        limit, rate = self.max_failure_rate, summary.failure_rate
        if limit is None or rate is None or rate <= limit:
            return []
        bad = summary.n_failed + summary.n_timeout
        message = f"failure rate {rate:.3f} ({bad}/{summary.n_done}) > max-failure-rate {limit:g}"
        return [ThresholdMiss(threshold="max_failure_rate", subject="job", value=rate, limit=limit, message=message)]


@dataclass(frozen=True, slots=True)
class WaitOptions:
    """What to wait for, how often to look, and for how long; validated on construction (UsageError)."""

    job_id: str | None = None
    name: str | None = None
    interval_ms: int = parse_duration_ms(DEFAULT_INTERVAL)
    timeout_ms: int | None = parse_duration_ms(DEFAULT_TIMEOUT)  # None: no limit
    give_up_after_ms: int = parse_duration_ms(DEFAULT_GIVE_UP_AFTER)
    thresholds: Thresholds = field(default_factory=Thresholds)
    junit_path: Path | None = None

    def __post_init__(self) -> None:
        if (self.job_id is None) == (self.name is None):
            raise UsageError("give either JOB_ID or --name, not both and not neither")
        if self.interval_ms < MIN_INTERVAL_MS:
            raise UsageError(f"--interval must be at least {MIN_INTERVAL_MS}ms")
        for flag, value in (
            ("--min-score", self.thresholds.min_score),
            ("--max-failure-rate", self.thresholds.max_failure_rate),
        ):
            if value is not None and not 0 <= value <= 1:
                raise UsageError(f"{flag} must be between 0 and 1, got {value:g}")


def options_from_args(args: argparse.Namespace) -> WaitOptions:
    """Options from `benchwatch wait` arguments; a bad duration or threshold raises UsageError (exit 2)."""
    junit_path: Path | None = args.junit
    if junit_path is not None and not junit_path.parent.is_dir():
        raise UsageError(f"--junit: the folder {str(junit_path.parent)!r} does not exist")
    timeout_ms = _duration_ms("--timeout", args.timeout)
    return WaitOptions(
        job_id=args.job_id,
        name=args.name,
        interval_ms=_duration_ms("--interval", args.interval),
        timeout_ms=timeout_ms or None,
        give_up_after_ms=_duration_ms("--give-up-after", args.give_up_after),
        thresholds=Thresholds(min_score=args.min_score, max_failure_rate=args.max_failure_rate),
        junit_path=junit_path,
    )


def _duration_ms(flag: str, raw: str) -> int:
    try:
        return parse_duration_ms(raw)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


@dataclass(frozen=True, slots=True)
class AgentProgress:
    """One agent's run so far: a bar of the live view."""

    name: str
    model_name: str | None
    done: int
    expected: int | None
    n_failed: int
    n_timeout: int
    average_score: float | None  # the outcome's once finished; else the mean of the scores seen so far
    finished: bool
    duration_ms: int | None


@dataclass(frozen=True, slots=True)
class WaitProgress:
    """Where the job stands after a poll."""

    job_id: str
    job_name: str
    state: str
    elapsed_ms: int
    agents: tuple[AgentProgress, ...]


@dataclass(frozen=True, slots=True)
class WaitResult:
    """How the wait ended: the exit code and why, and the job as last seen (None when never seen)."""

    exit_code: int
    reason: str
    elapsed_ms: int
    thresholds: Thresholds
    job_id: str | None = None
    job_name: str | None = None
    job: BenchmarkJobView | None = None
    summary: JobSummary | None = None
    misses: tuple[ThresholdMiss, ...] = ()

    @property
    def state(self) -> str | None:
        """The job's last seen state."""
        return self.job.state if self.job is not None else None

    @property
    def thresholds_checked(self) -> bool:
        """Thresholds are judged only on a completed job."""
        return self.state == JobState.COMPLETED


class WaitView(Protocol):
    """Where a wait reports: events as they come, progress after each poll, warnings, and the end."""

    def events(self, events: Sequence[Event]) -> None:
        """New events of one poll, in order."""

    def progress(self, progress: WaitProgress) -> None:
        """The job after a poll."""

    def warning(self, message: str) -> None:
        """A problem the wait survives (a poll that failed after the client's retries)."""

    def finished(self, result: WaitResult) -> None:
        """The end: summary and verdict."""

    def close(self) -> None:
        """Release the display (also on an interrupt); idempotent."""


class Waiter:
    """Polls one job until it is terminal, the timeout elapses, or the API stays unreachable for too long."""

    def __init__(
        self,
        client: RunloopClient,
        options: WaitOptions,
        view: WaitView,
        *,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        dashboard_url: str | None = None,
    ) -> None:
        self.client = client
        self.options = options
        self.view = view
        self.clock = clock or SystemClock()
        self._sleep = sleep
        self.dashboard_url = dashboard_url or dashboard_url_for(client.base_url)
        self._health = ApiHealth(options.give_up_after_ms)
        self._job_id = options.job_id
        self._started_ms = 0
        self._last: tuple[BenchmarkJobView, JobSummary] | None = None

    async def run(self) -> WaitResult:
        """Wait, and say how it ended. API errors that will not heal (404, 401/403, bad shapes) end it with 4."""
        self._started_ms = self.clock.now_ms()
        async with SQLiteStore(":memory:") as store:
            tracker = JobTracker(store, dashboard_url=self.dashboard_url)
            try:
                return await self._loop(tracker)
            except RunloopApiError as exc:
                return self._result(EXIT_UNKNOWN, str(exc))

    async def _loop(self, tracker: JobTracker) -> WaitResult:
        late_polls = 0
        while True:
            snapshot = await self._poll()
            if snapshot is not None:
                await self._observe(tracker, snapshot)
                if snapshot.job.is_terminal and not (_outcomes_pending(snapshot.job) and late_polls < LATE_POLLS):
                    return self._verdict()
                late_polls += snapshot.job.is_terminal
            elif (outage := self._health.check(self.clock.now_ms())) is not None:
                observation = await tracker.record([outage], None, outage.at_ms)
                self.view.events(observation.events)
                return self._unreachable()
            pause_ms = self._pause_ms()
            if pause_ms <= 0:
                return self._timed_out()
            await self._sleep(pause_ms / 1000)

    async def _poll(self) -> Snapshot | None:
        """One look at the job; None when the API failed even after the client's retries (reported, not fatal)."""
        started_ms = self.clock.now_ms()
        try:
            job_id = self._job_id or await self._find_by_name()
            snapshot = await fetch_snapshot(self.client, job_id, self.clock, scenario_runs=True)
        except TransientApiError as exc:
            self._health.failed(started_ms, str(exc))
            self.view.warning(f"{exc}; still waiting")
            return None
        self._health.succeeded(self.clock.now_ms())
        return snapshot

    async def _find_by_name(self) -> str:
        name = self.options.name
        async for job in self.client.iter_jobs(name=name, page_size=100):
            if job.name == name:
                self._job_id = job.id
                return job.id
        raise NotFoundError(f"no job named {name!r}")

    async def _observe(self, tracker: JobTracker, snapshot: Snapshot) -> None:
        observation = await tracker.observe(snapshot)
        self.view.events(observation.events)
        memory = observation.memory
        assert memory is not None  # a poll's observation carries the job's memory
        summary = _summarize(snapshot.job, memory, self.dashboard_url)
        self._last = (snapshot.job, summary)
        elapsed_ms = self.clock.now_ms() - self._started_ms
        self.view.progress(build_progress(snapshot, summary, memory, elapsed_ms))

    def _pause_ms(self) -> int:
        """How long to sleep before the next poll; zero or less once the timeout has elapsed."""
        if self.options.timeout_ms is None:
            return self.options.interval_ms
        remaining_ms = self._started_ms + self.options.timeout_ms - self.clock.now_ms()
        return min(self.options.interval_ms, remaining_ms)

    def _verdict(self) -> WaitResult:
        assert self._last is not None
        job, summary = self._last
        if job.state != JobState.COMPLETED:
            detail = f": {job.failure_reason}" if job.failure_reason else ""
            return self._result(EXIT_JOB_FAILED, f"the job ended {job.state}{detail}")
        misses = self.options.thresholds.misses(summary)
        if misses:
            reason = "the job completed but missed a threshold: " + "; ".join(miss.message for miss in misses)
            return self._result(EXIT_THRESHOLD_MISSED, reason, misses)
        held = " and every threshold held" if self.options.thresholds != Thresholds() else ""
        return self._result(EXIT_OK, f"the job completed{held}")

    def _unreachable(self) -> WaitResult:
        health = self._health
        down_ms = self.clock.now_ms() - (health.first_failure_ms or self.clock.now_ms())
        reason = (
            f"API unreachable: every poll failed for {_elapsed(down_ms)} ({health.failures} polls); "
            f"last error: {health.last_error}"
        )
        return self._result(EXIT_UNKNOWN, reason)

    def _timed_out(self) -> WaitResult:
        state = self._last[0].state if self._last is not None else "unseen"
        limit = format_duration_ms(self.options.timeout_ms or 0)
        return self._result(EXIT_TIMEOUT, f"--timeout {limit} elapsed; the job is still {state}")

    def _result(self, exit_code: int, reason: str, misses: tuple[ThresholdMiss, ...] = ()) -> WaitResult:
        job, summary = self._last if self._last is not None else (None, None)
        return WaitResult(
            exit_code=exit_code,
            reason=reason,
            elapsed_ms=self.clock.now_ms() - self._started_ms,
            thresholds=self.options.thresholds,
            job_id=job.id if job is not None else self._job_id,
            job_name=job.name if job is not None else self.options.name,
            job=job,
            summary=summary,
            misses=misses,
        )


def _outcomes_pending(job: BenchmarkJobView) -> bool:
    """A completed job with a run still lacking its outcome: outcomes can land a poll or two late."""
    return job.state == JobState.COMPLETED and bool(runs_to_follow(job))


def _summarize(job: BenchmarkJobView, memory: JobMemory, dashboard_url: str) -> JobSummary:
    run_counts = {run_id: memo.counts for run_id, memo in memory.runs.items() if memo.counts is not None}
    return summarize(job, memory.counters, run_counts, dashboard_url)


def build_progress(snapshot: Snapshot, summary: JobSummary, memory: JobMemory, elapsed_ms: int) -> WaitProgress:
    """Per-agent progress: every run seen, then agents of the spec whose run has not started yet."""
    job = snapshot.job
    expected = len(job.job_spec.scenario_ids) if job.job_spec is not None else None
    done = _done_by_run(job, memory)
    agents = [
        AgentProgress(
            name=agent.agent_name or agent.benchmark_run_id,
            model_name=agent.model_name,
            done=done.get(agent.benchmark_run_id, 0),
            expected=expected,
            n_failed=agent.n_failed,
            n_timeout=agent.n_timeout,
            average_score=agent.average_score
            if agent.finished
            else _score_so_far(runs.listed if (runs := snapshot.scenario_runs.get(agent.benchmark_run_id)) else ()),
            finished=agent.finished,
            duration_ms=agent.duration_ms,
        )
        for agent in summary.agents
    ]
    started = {agent.name for agent in agents}
    for config in job.job_spec.agent_configs if job.job_spec is not None else ():
        if config.name not in started:
            agents.append(AgentProgress(config.name, config.model_name, 0, expected, 0, 0, None, False, None))
    return WaitProgress(job.id, job.name, job.state, elapsed_ms, tuple(agents))


def _done_by_run(job: BenchmarkJobView, memory: JobMemory) -> dict[str, int]:
    """Scenarios in a final state per run: from the outcome once finished, else from the last scenario runs."""
    done = {run_id: sum(memo.counts) for run_id, memo in memory.runs.items() if memo.counts is not None}
    for outcome in job.benchmark_outcomes or ():
        scenarios = outcome.scenario_outcomes
        done[outcome.benchmark_run_id] = (
            len(scenarios) if scenarios is not None else outcome.n_completed + outcome.n_failed + outcome.n_timeout
        )
    return done


def _score_so_far(views: Sequence[ScenarioRunStatus]) -> float | None:
    """Mean score of the scenarios scored so far (the latest scored attempt of each)."""
    latest: dict[str, float] = {}
    for view in sorted(views, key=lambda v: (v.start_time_ms or 0, v.id)):
        if view.score is not None:
            latest[view.scenario_id] = view.score
    return round(sum(latest.values()) / len(latest), 4) if latest else None


def junit_verdicts(result: WaitResult) -> list[Verdict]:
    """The testcases of the wait itself: the job's end state, then each threshold that was judged."""
    state = result.state
    if result.exit_code in (EXIT_OK, EXIT_THRESHOLD_MISSED):
        job_case = Verdict("job state")
    elif result.exit_code == EXIT_JOB_FAILED and state is not None:
        failure_reason = result.job.failure_reason if result.job is not None else None
        job_case = Verdict("job state", "error", state, failure_reason or f"the job ended {state}")
    else:
        kind = "wait_timeout" if result.exit_code == EXIT_TIMEOUT else "unknown"
        job_case = Verdict("job state", "error", kind, result.reason)
    cases = [job_case]
    if result.thresholds_checked:
        cases.extend(_threshold_verdicts(result.thresholds, result.misses))
    return cases


def _threshold_verdicts(thresholds: Thresholds, misses: Sequence[ThresholdMiss]) -> list[Verdict]:
    given: Mapping[str, float | None] = {
        "min_score": thresholds.min_score,
        "max_failure_rate": thresholds.max_failure_rate,
    }
    cases = []
    for key, limit in given.items():
        if limit is None:
            continue
        missed = [miss.message for miss in misses if miss.threshold == key]
        name = f"{key.replace('_', '-')} {limit:g}"
        cases.append(Verdict(name, "failure", "threshold", "; ".join(missed)) if missed else Verdict(name))
    return cases


async def run_wait(
    client: RunloopClient,
    options: WaitOptions,
    view: WaitView,
    *,
    clock: Clock | None = None,
    sleep: Sleep = asyncio.sleep,
) -> WaitResult:
    """Wait, write the JUnit file if asked, and show the end; returns the result (its exit code is the process's)."""
    try:
        result = await Waiter(client, options, view, clock=clock, sleep=sleep).run()
    finally:
        view.close()
    if options.junit_path is not None:
        result = _with_junit(result, options.junit_path)
    view.finished(result)
    return result


def _with_junit(result: WaitResult, path: Path) -> WaitResult:
    """Write the JUnit file; a file that cannot be written turns the result into a usage error (exit 2)."""
    outcomes = (result.job.benchmark_outcomes or ()) if result.job is not None else ()
    try:
        write_junit(path, result.job_name or result.job_id or "benchwatch", outcomes, junit_verdicts(result))
    except OSError as exc:
        reason = f"cannot write the JUnit file {str(path)!r}: {exc.strerror or exc}"
        return dataclasses.replace(result, exit_code=EXIT_USAGE, reason=reason)
    return result


async def wait_command(args: argparse.Namespace) -> int:
    """`benchwatch wait`: the exit code says how the job ended (see docs/wait.md)."""
    from watcher.wait_render import view_for_stdout

    options = options_from_args(args)
    async with RunloopClient(base_url=args.base_url) as client:
        result = await run_wait(client, options, view_for_stdout(json_lines=args.json))
    return result.exit_code


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _elapsed(ms: int) -> str:
    return format_duration_ms(ms // 1000 * 1000)

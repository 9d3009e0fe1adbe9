"""What a wait produces and shows: thresholds, options, progress, the result, and the view protocol."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from watcher.cli.wait.defaults import DEFAULT_GIVE_UP_AFTER, DEFAULT_INTERVAL, DEFAULT_STALL_AFTER, DEFAULT_TIMEOUT
from watcher.cli.wait.first import (
    CheckedArgs,
    check_args,
    check_baseline,
    check_interval,
    check_share,
    check_target,
)
from watcher.config.durations import parse_duration_ms
from watcher.core.events import Event, JobCompared
from watcher.core.models import BenchmarkJobView, JobState
from watcher.core.summary import JobSummary

PREVIOUS_JOB: Final = "previous"  # --baseline previous: the last earlier completed job of the same benchmark


class ThresholdMiss(BaseModel):
    """One threshold a completed job did not hold: which, for whom, the value and the limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: Literal["min_score", "max_failure_rate", "max_regressions", "significant_drop"]
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
                value=agent.score,
                limit=limit,
                message=f"{agent.agent_name or agent.benchmark_run_id} score {_score(agent.score)} "
                f"< min-score {limit:g}",
            )
            for agent in summary.agents
            if agent.score is None or agent.score < limit
        ]

    def _rate_misses(self, summary: JobSummary) -> list[ThresholdMiss]:
        limit, rate = self.max_failure_rate, summary.failure_rate
        if limit is None or rate is None or rate <= limit:
            return []
        bad = summary.n_failed + summary.n_timeout
        message = f"failure rate {rate:.3f} ({bad}/{summary.n_done}) > max-failure-rate {limit:g}"
        return [ThresholdMiss(threshold="max_failure_rate", subject="job", value=rate, limit=limit, message=message)]


@dataclass(frozen=True, slots=True)
class BaselineBounds:
    """`--baseline previous|JOB_ID`, `--max-regressions N`, `--fail-on-significant-drop`."""

    baseline: str | None = None
    max_regressions: int | None = None
    fail_on_significant_drop: bool = False

    def __post_init__(self) -> None:
        check_baseline(self.baseline, self.max_regressions, self.fail_on_significant_drop)

    @property
    def explicit_job_id(self) -> str | None:
        """The baseline job named on the command line (None for `previous` or no baseline)."""
        return self.baseline if self.baseline not in (None, PREVIOUS_JOB) else None

    @property
    def judged(self) -> bool:
        """Whether any bound is set (else the comparison is only shown)."""
        return self.max_regressions is not None or self.fail_on_significant_drop


@dataclass(frozen=True, slots=True)
class WaitOptions:
    """What to wait for, how often to look, and for how long; validated on construction (UsageError)."""

    job_id: str | None = None
    name: str | None = None
    interval_ms: int = parse_duration_ms(DEFAULT_INTERVAL)
    timeout_ms: int | None = parse_duration_ms(DEFAULT_TIMEOUT)  # None: no limit
    give_up_after_ms: int = parse_duration_ms(DEFAULT_GIVE_UP_AFTER)
    stall_after_ms: int | None = parse_duration_ms(DEFAULT_STALL_AFTER)  # None: never give up on a quiet job
    thresholds: Thresholds = field(default_factory=Thresholds)
    junit_path: Path | None = None
    baseline: BaselineBounds = field(default_factory=BaselineBounds)
    summary_markdown_path: Path | None = None  # --summary-markdown FILE: the summary, as markdown
    step_summary_path: Path | None = None  # $GITHUB_STEP_SUMMARY: the same markdown, appended

    def __post_init__(self) -> None:
        check_target(self.job_id, self.name)
        check_interval(self.interval_ms)
        check_share("--min-score", self.thresholds.min_score)
        check_share("--max-failure-rate", self.thresholds.max_failure_rate)


def options_from_args(
    args: argparse.Namespace, checked: CheckedArgs | None = None, environ: Mapping[str, str] | None = None
) -> WaitOptions:
    """Options from `benchwatch wait` arguments (parsed by `check_args` unless given) and the environment (a GitHub
    Actions step's `GITHUB_STEP_SUMMARY`); a bad duration or threshold raises UsageError (exit 2)."""
    checked = checked or check_args(args)
    step_summary = (os.environ if environ is None else environ).get("GITHUB_STEP_SUMMARY", "").strip()
    return WaitOptions(
        job_id=args.job_id,
        name=args.name,
        interval_ms=checked.interval_ms,
        timeout_ms=checked.timeout_ms,
        give_up_after_ms=checked.give_up_after_ms,
        stall_after_ms=checked.stall_after_ms,
        thresholds=Thresholds(min_score=args.min_score, max_failure_rate=args.max_failure_rate),
        junit_path=checked.junit_path,
        summary_markdown_path=checked.summary_markdown_path,
        step_summary_path=Path(step_summary) if step_summary else None,
        baseline=BaselineBounds(
            baseline=getattr(args, "baseline", None),
            max_regressions=getattr(args, "max_regressions", None),
            fail_on_significant_drop=getattr(args, "fail_on_significant_drop", False),
        ),
    )


@dataclass(frozen=True, slots=True)
class AgentProgress:
    """One agent's run so far: a bar of the live view."""

    name: str
    model_name: str | None
    done: int
    expected: int | None
    n_failed: int
    n_timeout: int
    score: float | None  # benchwatch's score (watcher/core/score.py): of the outcome once finished, else so far
    finished: bool
    duration_ms: int | None
    n_passed: int = 0  # completed with score 1.0 (rl-cli's "passed"; a JUnit testcase that passes)
    n_completed: int = 0

    @property
    def n_judged(self) -> int:
        """Scenarios that passed or failed: completed, failed or timed out (canceled ones neither)."""
        return self.n_completed + self.n_failed + self.n_timeout

    @property
    def pass_rate(self) -> float | None:
        """Passed / judged, as in the summary line; None before anything is judged."""
        return self.n_passed / self.n_judged if self.n_judged else None


@dataclass(frozen=True, slots=True)
class RunningScenario:
    """A scenario running now: whose, which, and for how long (at the poll)."""

    agent: str
    scenario: str
    elapsed_ms: int


@dataclass(frozen=True, slots=True)
class WaitProgress:
    """Where the job stands after a poll."""

    job_id: str
    job_name: str
    state: str
    elapsed_ms: int
    agents: tuple[AgentProgress, ...]
    running: tuple[RunningScenario, ...] = ()  # longest-running first


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
    comparison: JobCompared | None = None  # with --baseline, when the job had one
    passed: Mapping[str, int] = field(default_factory=dict)  # benchmark run id → scenarios passed (score 1.0)

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


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"

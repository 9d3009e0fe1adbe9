"""A digest: the jobs that finished in a period, in one message — pure functions of what was kept and told.

When a digest is due is date arithmetic in its time zone (`due_at_or_before`, `due_before`): every N days at a
local time, on the days whose ordinal is a multiple of N from the first Monday of the calendar (every 7 days:
Mondays). What it says is built from each job's `job.finished` event, its kept outcomes (scores, pass rates, failure
classes) and its `job.compared` event (regressions, flaky scenarios), when there is one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Final

from watcher.core.comparison import JobOutcomes, ScenarioResult
from watcher.core.events import JobCompared, JobFinished
from watcher.core.failureclass import FailureClasses, FailureCounts

MAX_JOBS_LISTED: Final = 50  # jobs named in one digest; the rest are counted
_DAY_MS: Final = 86_400_000


# -- when ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DigestSchedule:
    """Every `every_days` days at `at` (local time in `zone`)."""

    at: time
    zone: tzinfo
    every_days: int = 1

    def due_on(self, day: date) -> int:
        """The instant (ms) the digest is due on a local `day` (a time a DST change skips reads as before it)."""
        local = datetime.combine(day, self.at, tzinfo=self.zone)
        return int(local.astimezone(UTC).timestamp() * 1000)

    def is_due_day(self, day: date) -> bool:
        """Whether a digest falls on this local day (every 7 days: Mondays; ordinal 1 is a Monday)."""
        return (day.toordinal() - 1) % self.every_days == 0

    def due_at_or_before(self, now_ms: int) -> int:
        """The latest instant the digest was due, at or before `now_ms`."""
        today = datetime.fromtimestamp(now_ms / 1000, tz=self.zone).date()
        for back in range(self.every_days + 2):
            day = today - timedelta(days=back)
            if self.is_due_day(day) and self.due_on(day) <= now_ms:
                return self.due_on(day)
        raise AssertionError("unreachable: a due day lies within every_days + 1 days")  # pragma: no cover

    def due_before(self, due_ms: int) -> int:
        """The instant the digest was due before the one at `due_ms` (one period earlier, in local days)."""
        day = datetime.fromtimestamp(due_ms / 1000, tz=self.zone).date()
        return self.due_on(day - timedelta(days=self.every_days))


# -- what ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentLine:
    """One agent of a finished job: its score (failed, timed-out and canceled scenarios counting 0) and pass rate."""

    agent_name: str
    model_name: str | None
    score: float | None
    pass_rate: float | None


@dataclass(frozen=True, slots=True)
class DigestJob:
    """One finished job in a digest."""

    job_id: str
    job_name: str
    state: str
    finished_ms: int
    failure_reason: str | None
    agents: tuple[AgentLine, ...]
    failures: FailureCounts
    baseline_job_name: str | None = None
    n_regressions: int = 0
    n_new_regressions: int = 0
    n_fixes: int = 0
    n_flaky: int = 0
    dropped: tuple[str, ...] = ()  # agents whose score dropped significantly
    infra_degraded: bool = False


def digest_job(
    finished: JobFinished,
    outcomes: JobOutcomes | None,
    compared: JobCompared | None,
    classes: FailureClasses,
    *,
    infra_degraded: bool = False,
) -> DigestJob:
    """A job's line in the digest: each agent's score as the event told it (benchwatch's score, watcher/core/score.py),
    pass rates from its kept outcomes (without them, none)."""
    told = {run.agent_name or run.benchmark_run_id: run.score for run in finished.outcomes}
    if outcomes is not None:
        agents = tuple(
            _agent_line(agent.agent_name, agent.model_name, agent.scenarios, told.get(agent.agent_name))
            for agent in outcomes.agents
        )
        failures = _failure_counts(outcomes, classes)
    else:
        agents = tuple(
            AgentLine(run.agent_name or run.benchmark_run_id, run.model_name, run.score, None)
            for run in finished.outcomes
        )
        failures = FailureCounts(agent=sum(run.n_failed for run in finished.outcomes),
                                 timeout=sum(run.n_timeout for run in finished.outcomes))  # fmt: skip
    job = DigestJob(
        job_id=finished.job_id,
        job_name=finished.job_name,
        state=finished.state,
        finished_ms=finished.at_ms,
        failure_reason=finished.failure_reason,
        agents=agents,
        failures=failures,
        infra_degraded=infra_degraded,
    )
    if compared is None:
        return job
    return dataclasses.replace(
        job,
        baseline_job_name=compared.baseline_job_name,
        n_regressions=compared.n_regressions,
        n_new_regressions=sum(1 for a in compared.agents for r in a.regressions if r.new),
        n_fixes=compared.n_fixes,
        n_flaky=sum(len(a.flaky) for a in compared.agents),
        dropped=tuple(a.agent_name for a in compared.agents if a.significant and a.delta < 0),
    )


def digest_message(name: str, start_ms: int, end_ms: int, zone: tzinfo, jobs: Sequence[DigestJob]) -> tuple[str, str]:
    """The digest's title and text (plain text: each notifier escapes it for where it lands)."""
    span = f"{_local(start_ms, zone)} → {_local(end_ms, zone)}"
    regressed = sum(1 for job in jobs if job.n_regressions or job.dropped)
    infra = sum(1 for job in jobs if job.failures.setup or job.infra_degraded)
    counts = [f"{len(jobs)} {'job' if len(jobs) == 1 else 'jobs'} finished"]
    if regressed:
        counts.append(f"{regressed} with regressions")
    if infra:
        counts.append(f"{infra} with infra failures")
    title = f"Digest {name}: {', '.join(counts)} ({span})"
    if not jobs:
        return title, f"No job finished between {span}."
    ordered = sorted(jobs, key=lambda job: (job.finished_ms, job.job_name))
    lines: list[str] = []
    for job in ordered[:MAX_JOBS_LISTED]:
        lines.extend(_job_lines(job))
    if len(ordered) > MAX_JOBS_LISTED:
        lines.append(f"… and {len(ordered) - MAX_JOBS_LISTED} more jobs")
    return title, "\n".join(lines)


def _job_lines(job: DigestJob) -> list[str]:
    reason = f": {_one_line(job.failure_reason)}" if job.failure_reason else ""
    lines = [f"{_one_line(job.job_name)} — {job.state}{reason}"]
    if job.agents:
        lines.append("  " + "; ".join(_agent_text(agent) for agent in job.agents))
    notes = []
    if job.baseline_job_name is not None:
        new = f" ({job.n_new_regressions} new)" if job.n_new_regressions else ""
        change = f"vs {_one_line(job.baseline_job_name)}: {job.n_regressions} regressed{new}, {job.n_fixes} fixed, "
        change += f"{job.n_flaky} flaky"
        if job.dropped:
            change += f", significant drop: {', '.join(map(_one_line, job.dropped))}"
        notes.append(change)
    if job.failures.total:
        notes.append(f"failures: {job.failures.text()}")
    if job.infra_degraded:
        notes.append("infra degraded")
    if notes:
        lines.append("  " + "; ".join(notes))
    return lines


def _agent_text(agent: AgentLine) -> str:
    model = f" ({_one_line(agent.model_name)})" if agent.model_name else ""
    score = "n/a" if agent.score is None else f"{agent.score:.3f}"
    rate = "" if agent.pass_rate is None else f", pass rate {agent.pass_rate:.0%}"
    return f"{_one_line(agent.agent_name)}{model}: score {score}{rate}"


def _agent_line(
    name: str, model: str | None, scenarios: Sequence[ScenarioResult], told_score: float | None
) -> AgentLine:
    """The agent's score as `job.finished` told it; from the kept scenarios (failures counting 0) for an event
    recorded before it carried scores."""
    if not scenarios:
        return AgentLine(name, model, told_score, None)
    kept = round(math.fsum(s.score_or_zero for s in scenarios) / len(scenarios), 6)
    rate = sum(1 for s in scenarios if s.passed) / len(scenarios)
    return AgentLine(name, model, told_score if told_score is not None else kept, round(rate, 6))


def _failure_counts(outcomes: JobOutcomes, classes: FailureClasses) -> FailureCounts:
    counts = dict.fromkeys(("setup", "timeout", "agent"), 0)
    for agent in outcomes.agents:
        for scenario in agent.scenarios:
            if scenario.state in ("FAILED", "TIMEOUT"):
                kind = classes.classify(scenario.state, scenario.scenario_run_id, scenario.exception_type)
                counts[kind or "agent"] += 1
    return FailureCounts(**counts)


def _local(at_ms: int, zone: tzinfo) -> str:
    return datetime.fromtimestamp(at_ms / 1000, tz=zone).strftime("%Y-%m-%d %H:%M")


def _one_line(text: str) -> str:
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())[:200]

"""What the live view shows after a poll: per-agent progress, passes, and the scenarios running now — pure
functions of a snapshot and the job's memory."""

from __future__ import annotations

from collections.abc import Mapping

from watcher.cli.progress import done_by_run
from watcher.cli.wait.junit import PASSING_SCORE
from watcher.cli.wait.model import AgentProgress, RunningScenario, WaitProgress
from watcher.core.memory import JobMemory
from watcher.core.models import BenchmarkJobView, ScenarioOutcome, ScenarioState
from watcher.core.scenario_runs import RunScenarios, ScenarioRunStatus
from watcher.core.snapshot import Snapshot
from watcher.core.summary import JobSummary
from watcher.diff.summary import running_scores


def build_progress(
    snapshot: Snapshot, summary: JobSummary, memory: JobMemory, elapsed_ms: int, passed: Mapping[str, int]
) -> WaitProgress:
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
            score=agent.score if agent.finished else running_scores(snapshot.scenario_runs).get(agent.benchmark_run_id),
            finished=agent.finished,
            duration_ms=agent.duration_ms,
            n_passed=passed.get(agent.benchmark_run_id, 0),
            n_completed=agent.n_completed,
        )
        for agent in summary.agents
    ]
    started = {agent.name for agent in agents}
    for config in job.job_spec.agent_configs if job.job_spec is not None else ():
        if config.name not in started:
            agents.append(AgentProgress(config.name, config.model_name, 0, expected, 0, 0, None, False, None))
    return WaitProgress(job.id, job.name, job.state, elapsed_ms, tuple(agents), running_now(snapshot))


def running_now(snapshot: Snapshot) -> tuple[RunningScenario, ...]:
    """The scenarios whose latest attempt is not final yet, longest-running first, timed at the poll."""
    agent_of = {run.benchmark_run_id: run.agent_name for run in snapshot.job.in_progress_runs or ()}
    running = [
        RunningScenario(
            agent=agent_of.get(run_id) or run_id,
            scenario=status.name or status.scenario_id,
            elapsed_ms=_running_for_ms(status, snapshot.at_ms),
        )
        for run_id, runs in snapshot.scenario_runs.items()
        for status in runs.latest
        if status.outcome_state is None and (status.start_time_ms is not None or status.duration_ms is not None)
    ]
    return tuple(sorted(running, key=lambda item: (-item.elapsed_ms, item.agent, item.scenario)))


def _running_for_ms(status: ScenarioRunStatus, at_ms: int) -> int:
    """How long a scenario has run: the API's own `duration_ms` when it gives one (its clock), else since its start
    by ours (a clock that differs from the API's would skew it)."""
    if status.duration_ms is not None:
        return max(0, status.duration_ms)
    return max(0, at_ms - (status.start_time_ms or at_ms))


def passed_by_run(job: BenchmarkJobView, runs: Mapping[str, RunScenarios]) -> dict[str, int]:
    """Scenarios passed (completed with score 1.0) per run: the outcome's once there (its first listing, as the
    JUnit file reads it), else the latest attempts of the run's scenario runs."""
    passed = {
        run_id: sum(1 for status in scenarios.latest if _passes(status.outcome_state, status.score))
        for run_id, scenarios in runs.items()
    }
    seen: set[str] = set()
    for outcome in job.benchmark_outcomes or ():
        if outcome.scenario_outcomes is not None and outcome.benchmark_run_id not in seen:
            seen.add(outcome.benchmark_run_id)
            passed[outcome.benchmark_run_id] = sum(
                1 for scenario in outcome.scenario_outcomes if _scenario_passes(scenario)
            )
    return passed


def _scenario_passes(scenario: ScenarioOutcome) -> bool:
    return _passes(scenario.state, scenario.score)


def _passes(state: str | None, score: float | None) -> bool:
    return state == ScenarioState.COMPLETED and score is not None and score >= PASSING_SCORE


def _done_by_run(job: BenchmarkJobView, memory: JobMemory) -> dict[str, int]:
    """Scenarios in a final state per run (`done_by_run`, the count `benchwatch jobs` shows too)."""
    return done_by_run(job, {run_id: memo.counts for run_id, memo in memory.runs.items() if memo.counts is not None})

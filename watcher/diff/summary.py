"""A job's derived summary, computed from its view and memory: failure rate, scores per agent, failures by type."""

from __future__ import annotations

import urllib.parse
from collections import defaultdict
from collections.abc import Mapping

from watcher.core.events import Counters
from watcher.core.failureclass import DEFAULT_FAILURE_CLASSES, FailureClass, FailureClasses, FailureCounts
from watcher.core.models import BenchmarkJobSource, BenchmarkJobView, BenchmarkOutcome, ScenarioState
from watcher.core.scenario_runs import RunScenarios
from watcher.core.score import outcome_score
from watcher.core.summary import (
    MAX_EXAMPLE_MESSAGE_CHARS,
    MAX_FAILURE_EXAMPLES,
    AgentSummary,
    FailureExample,
    FailureGroup,
    JobSummary,
)


def dashboard_url_for(api_base_url: str) -> str:
    """The Runloop dashboard of an API host: `https://api.runloop.ai` → `https://platform.runloop.ai`."""
    return api_base_url.rstrip("/").replace("://api.", "://platform.", 1)


def summarize(
    job: BenchmarkJobView,
    counters: Counters,
    run_counts: Mapping[str, tuple[int, int, int, int]],
    dashboard_url: str,
    run_scores: Mapping[str, float | None] | None = None,
    *,
    classes: FailureClasses = DEFAULT_FAILURE_CLASSES,
) -> JobSummary:
    """Summarise a job from its view and the diff's counters (`run_counts`: in-progress runs' counts;
    `run_scores`: their scores so far, from the scenario runs fetched with the snapshot — see `running_scores`);
    `classes` sorts failures into setup, timeout and agent."""
    source = job.job_source if isinstance(job.job_source, BenchmarkJobSource) else None
    run_base = f"{dashboard_url}/benchmarks/custom/{_segment(source.benchmark_id if source else 'single')}/runs"
    agents = _agents(job, run_counts, run_scores or {}, run_base)
    scores = {a.agent_name or a.benchmark_run_id: a.score for a in agents if a.score is not None}
    bad = counters.n_failed + counters.n_timeout
    return JobSummary(
        **dict(counters),
        job_id=job.id,
        job_name=job.name,
        state=job.state,
        failure_reason=job.failure_reason,
        failure_rate=round(bad / counters.n_done, 6) if counters.n_done else None,
        scores=scores,
        min_score=min(scores.values()) if scores else None,
        agents=agents,
        failures=_failure_groups(job.benchmark_outcomes or (), dashboard_url, classes),
        failures_by_class=_failures_by_class(job, run_counts, classes),
        dashboard_url=dashboard_url,
        benchmark_id=source.benchmark_id if source else None,
        benchmark_name=source.benchmark_name if source else None,
    )


def _example_message(message: str) -> str:
    """An example's message, cut: a summary travels with every notification (a webhook's body, a rule's stored
    group), and 25 exception types × 5 examples of a 10 kB message would make each of them over a megabyte."""
    return message if len(message) <= MAX_EXAMPLE_MESSAGE_CHARS else message[: MAX_EXAMPLE_MESSAGE_CHARS - 1] + "…"


def _segment(identifier: str) -> str:
    """An id from the API, quoted to be one URL path segment (it may hold anything)."""
    return urllib.parse.quote(identifier, safe="")


def running_scores(scenario_runs: Mapping[str, RunScenarios]) -> dict[str, float | None]:
    """Each followed run's score so far (watcher/core/score.py), from its scenarios' latest attempts."""
    return {run_id: runs.running_score() for run_id, runs in scenario_runs.items()}


def _agents(
    job: BenchmarkJobView,
    run_counts: Mapping[str, tuple[int, int, int, int]],
    run_scores: Mapping[str, float | None],
    run_base: str,
) -> tuple[AgentSummary, ...]:
    rows: dict[str, AgentSummary] = {}
    n_scenarios = len(job.job_spec.scenario_ids) if job.job_spec is not None else None
    for outcome in job.benchmark_outcomes or ():
        rows.setdefault(
            outcome.benchmark_run_id,
            AgentSummary(
                benchmark_run_id=outcome.benchmark_run_id,
                agent_name=outcome.agent_name,
                model_name=outcome.model_name,
                finished=True,
                score=outcome_score(outcome, n_scenarios),
                average_score=outcome.average_score,
                n_completed=outcome.n_completed,
                n_failed=outcome.n_failed,
                n_timeout=outcome.n_timeout,
                duration_ms=outcome.duration_ms,
                url=f"{run_base}/{_segment(outcome.benchmark_run_id)}",
            ),
        )
    for run in job.in_progress_runs or ():
        if run.benchmark_run_id in rows:
            continue
        completed, failed, timeout, _ = run_counts.get(run.benchmark_run_id, (0, 0, 0, 0))
        rows[run.benchmark_run_id] = AgentSummary(
            benchmark_run_id=run.benchmark_run_id,
            agent_name=run.agent_name,
            model_name=run.model_name,
            finished=False,
            score=run_scores.get(run.benchmark_run_id),
            average_score=None,
            n_completed=completed,
            n_failed=failed,
            n_timeout=timeout,
            duration_ms=run.duration_ms,
            url=f"{run_base}/{_segment(run.benchmark_run_id)}",
        )
    return tuple(sorted(rows.values(), key=lambda row: (row.agent_name or "", row.benchmark_run_id)))


def _failures_by_class(
    job: BenchmarkJobView, run_counts: Mapping[str, tuple[int, int, int, int]], classes: FailureClasses
) -> FailureCounts:
    """Failed and timed-out scenarios by class: finished runs' from their outcomes; in-progress runs' from their
    scenario runs' counts, which carry no exception type (a failure is `agent`, a timeout `timeout` there)."""
    counts = dict.fromkeys(("setup", "timeout", "agent"), 0)
    finished = set()
    for outcome in job.benchmark_outcomes or ():
        if outcome.benchmark_run_id in finished:
            continue
        finished.add(outcome.benchmark_run_id)
        for scenario in outcome.scenario_outcomes or ():
            if scenario.state in (ScenarioState.FAILED, ScenarioState.TIMEOUT):
                reason = scenario.failure_reason
                kind = classes.classify(
                    scenario.state, scenario.scenario_run_id, reason.exception_type if reason else None
                )
                counts[kind or "agent"] += 1
    for run_id, (_, failed, timeout, _) in run_counts.items():
        if run_id not in finished:
            counts["agent"] += failed
            counts["timeout"] += timeout
    return FailureCounts(**counts)


def _failure_groups(
    outcomes: tuple[BenchmarkOutcome, ...], dashboard_url: str, classes: FailureClasses
) -> tuple[FailureGroup, ...]:
    """Failed and timed-out scenarios grouped by exception type (and class), biggest group first."""
    groups: dict[tuple[str, FailureClass], list[FailureExample]] = defaultdict(list)
    for outcome in outcomes:
        for scenario in outcome.scenario_outcomes or ():
            if scenario.state not in (ScenarioState.FAILED, ScenarioState.TIMEOUT):
                continue
            reason = scenario.failure_reason
            exception_type = reason.exception_type if reason else scenario.state.lower()
            failure_class = classes.classify(
                scenario.state, scenario.scenario_run_id, reason.exception_type if reason else None
            )
            url = None
            if scenario.scenario_run_id:
                scenario_path = f"{_segment(scenario.scenario_definition_id)}/runs/{_segment(scenario.scenario_run_id)}"
                url = f"{dashboard_url}/scenarios/{scenario_path}"
            groups[(exception_type, failure_class or "agent")].append(
                FailureExample(
                    scenario_name=scenario.scenario_name or scenario.scenario_definition_id,
                    agent_name=outcome.agent_name,
                    message=_example_message(reason.exception_message) if reason else "",
                    url=url,
                )
            )
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return tuple(
        FailureGroup(
            exception_type=kind,
            failure_class=failure_class,
            count=len(examples),
            examples=tuple(examples[:MAX_FAILURE_EXAMPLES]),
        )
        for (kind, failure_class), examples in ordered
    )

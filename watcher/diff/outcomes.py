"""What is kept of a finished job for later comparisons: `JobOutcomes` from a `BenchmarkJobView`, and which jobs
are comparable (the same benchmark) and which is a job's baseline — pure functions."""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable

from watcher.core.comparison import AgentOutcomes, JobOutcomes, ScenarioResult
from watcher.core.models import BenchmarkJobSource, BenchmarkJobView, JobState, ScenariosJobSource


def benchmark_key(job: BenchmarkJobView) -> str:
    """Which benchmark a job ran: `benchmark:<id>` from its source, else a digest of its set of scenario ids."""
    source = job.job_source
    if isinstance(source, BenchmarkJobSource) and source.benchmark_id:
        return f"benchmark:{source.benchmark_id}"
    ids: set[str] = set(job.job_spec.scenario_ids) if job.job_spec is not None else set()
    if not ids and isinstance(source, ScenariosJobSource):
        ids = set(source.scenario_ids)
    if not ids:
        ids = {s.scenario_definition_id for o in job.benchmark_outcomes or () for s in o.scenario_outcomes or ()}
    digest = hashlib.blake2b("\n".join(sorted(ids)).encode(), digest_size=8).hexdigest()
    return f"scenarios:{digest}"


def job_outcomes(job: BenchmarkJobView) -> JobOutcomes:
    """The record kept of a job: per agent (first outcome of a run wins), each scenario's last listed result."""
    agents: dict[str, AgentOutcomes] = {}
    for outcome in job.benchmark_outcomes or ():
        if outcome.benchmark_run_id in agents:
            continue  # a run listed twice: the first listing is authoritative
        results = {
            s.scenario_definition_id: ScenarioResult(
                scenario_definition_id=s.scenario_definition_id,
                scenario_name=s.scenario_name,
                state=s.state,
                score=s.score,
                scenario_run_id=s.scenario_run_id,
                exception_type=s.failure_reason.exception_type if s.failure_reason else None,
            )
            for s in outcome.scenario_outcomes or ()
        }
        agents[outcome.benchmark_run_id] = AgentOutcomes(
            agent_name=outcome.agent_name,
            model_name=outcome.model_name,
            benchmark_run_id=outcome.benchmark_run_id,
            scenarios=tuple(results[key] for key in sorted(results)),
        )
    source = job.job_source
    return JobOutcomes(
        job_id=job.id,
        job_name=job.name,
        state=job.state,
        create_time_ms=job.create_time_ms,
        benchmark=benchmark_key(job),
        benchmark_id=source.benchmark_id if isinstance(source, BenchmarkJobSource) else None,
        agents=tuple(sorted(agents.values(), key=lambda a: (a.agent_name, a.model_name or "", a.benchmark_run_id))),
    )


def is_candidate(current: JobOutcomes, other: JobOutcomes, name_glob: str | None) -> bool:
    """Whether `other` may be `current`'s baseline: an earlier completed job of the same benchmark (and name glob)."""
    return (
        other.job_id != current.job_id
        and other.state == JobState.COMPLETED
        and other.benchmark == current.benchmark
        and (other.create_time_ms, other.job_id) < (current.create_time_ms, current.job_id)
        and (name_glob is None or fnmatch.fnmatchcase(other.job_name, name_glob))
    )


def pick_baseline(current: JobOutcomes, candidates: Iterable[JobOutcomes], name_glob: str | None) -> JobOutcomes | None:
    """The most recent earlier completed job of the same benchmark among `candidates`, or None."""
    eligible = [other for other in candidates if is_candidate(current, other, name_glob)]
    return max(eligible, key=lambda o: (o.create_time_ms, o.job_id), default=None)


def comparable_history(
    current: JobOutcomes, candidates: Iterable[JobOutcomes], name_glob: str | None, limit: int
) -> list[JobOutcomes]:
    """The last `limit` comparable jobs before `current`, oldest first (distinct jobs)."""
    unique = {other.job_id: other for other in candidates if is_candidate(current, other, name_glob)}
    ordered = sorted(unique.values(), key=lambda o: (o.create_time_ms, o.job_id))
    return ordered[-limit:] if limit > 0 else []

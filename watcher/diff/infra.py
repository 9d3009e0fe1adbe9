"""`job.infra_degraded`: too many of a job's scenarios failed in setup — a pure function of the job's memory before
a poll and the poll's snapshot.

Setup failures are told by the outcomes (a scenario that failed before the agent ran has no scenario run to follow
mid-run), so the share is counted over the runs whose outcome is in. The event is told on the poll where the share
first goes over the limit: the runs finished before that poll (in the memory) were under it, the runs finished now
take it over. A job first seen with its outcomes already in tells nothing, as with every other event of discovery.
"""

from __future__ import annotations

from collections import Counter
from typing import Final

from watcher.core.events import ExceptionCount, JobInfraDegraded, event_id
from watcher.core.failureclass import FailureClasses
from watcher.core.memory import JobMemory
from watcher.core.models import BenchmarkOutcome, ScenarioState
from watcher.core.snapshot import Snapshot

DEFAULT_INFRA_ALERT_RATIO: Final = 0.2


def infra_degraded(
    before: JobMemory | None, snapshot: Snapshot, classes: FailureClasses, ratio: float | None
) -> JobInfraDegraded | None:
    """The event, when this poll takes the job's share of setup failures over `ratio` (None: never)."""
    if before is None or ratio is None:
        return None
    outcomes = _first_listings(snapshot.job.benchmark_outcomes or ())
    earlier = [o for o in outcomes if before.runs.get(o.benchmark_run_id) and before.runs[o.benchmark_run_id].finished]
    if len(earlier) == len(outcomes):
        return None  # no run finished with this poll: nothing new to count
    setup_before, done_before = _setup_failures(earlier, classes)
    if done_before and len(setup_before) / done_before > ratio:
        return None  # already over the limit before this poll: told then
    setup, done = _setup_failures(outcomes, classes)
    if not done or len(setup) / done <= ratio:
        return None
    by_type = sorted(Counter(setup).items(), key=lambda item: (-item[1], item[0]))
    job = snapshot.job
    return JobInfraDegraded(
        id=event_id(job.id, "job.infra_degraded", ""),  # once per job
        job_id=job.id,
        job_name=job.name,
        at_ms=snapshot.at_ms,
        n_setup=len(setup),
        n_done=done,
        setup_ratio=round(len(setup) / done, 6),
        infra_alert_ratio=ratio,
        exception_types=tuple(ExceptionCount(exception_type=kind, count=count) for kind, count in by_type),
    )


def _first_listings(outcomes: tuple[BenchmarkOutcome, ...]) -> list[BenchmarkOutcome]:
    seen: set[str] = set()
    first = []
    for outcome in outcomes:
        if outcome.benchmark_run_id not in seen:
            seen.add(outcome.benchmark_run_id)
            first.append(outcome)
    return first


def _setup_failures(outcomes: list[BenchmarkOutcome], classes: FailureClasses) -> tuple[list[str], int]:
    """The exception types of the scenarios that failed in setup, and how many scenarios are in a final state."""
    setup: list[str] = []
    done = 0
    for outcome in outcomes:
        for scenario in outcome.scenario_outcomes or ():
            if scenario.state not in ScenarioState.ALL:
                continue
            done += 1
            reason = scenario.failure_reason
            exception_type = reason.exception_type if reason else None
            if classes.classify(scenario.state, scenario.scenario_run_id, exception_type) == "setup":
                setup.append(exception_type or scenario.state.lower())
    return setup, done

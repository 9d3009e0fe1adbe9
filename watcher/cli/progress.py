"""How far a job is, counted one way for every command: `jobs` and `wait` must never disagree on "6/24 done"."""

from __future__ import annotations

from collections.abc import Mapping

from watcher.core.models import BenchmarkJobView

Counts = tuple[int, int, int, int]  # completed, failed, timed out, canceled


def done_by_run(job: BenchmarkJobView, counts_by_run: Mapping[str, Counts]) -> dict[str, int]:
    """Scenarios in a final state per benchmark run.

    A finished run counts its outcome (authoritative once there); a run still going counts the latest attempts of
    its scenario runs that reached a final state (`counts_by_run`, from the run's scenario runs).
    """
    done = {run_id: sum(counts) for run_id, counts in counts_by_run.items()}
    for outcome in job.benchmark_outcomes or ():
        scenarios = outcome.scenario_outcomes
        done[outcome.benchmark_run_id] = (
            len(scenarios) if scenarios is not None else outcome.n_completed + outcome.n_failed + outcome.n_timeout
        )
    return done


def n_done(job: BenchmarkJobView, counts_by_run: Mapping[str, Counts]) -> int:
    """Scenarios in a final state over the whole job."""
    return sum(done_by_run(job, counts_by_run).values())

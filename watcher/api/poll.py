"""One poll of one job: the job view and, when asked, the scenario runs of its unfinished runs, as a Snapshot."""

from __future__ import annotations

import logging
from typing import Final

from watcher.api.client import RunloopClient, parse_body
from watcher.api.decode import decode_pages
from watcher.api.errors import MalformedResponseError, SchemaError
from watcher.core.clock import Clock
from watcher.core.models import BenchmarkJobView
from watcher.core.scenario_runs import RunScenarios
from watcher.core.snapshot import Snapshot

log = logging.getLogger("benchwatch.poll")

# What a followed run's scenario-run pages can be that costs only that run's scenario events of one poll: not JSON,
# or JSON of the wrong shape (a null `scenario_id`). The job's own events (state, progress, finished) still flow.
MALFORMED_PAGES: Final = (SchemaError, MalformedResponseError)


def runs_to_follow(job: BenchmarkJobView) -> list[str]:
    """In-progress runs whose scenario runs tell something the outcomes do not (runs without an outcome yet)."""
    finished = {outcome.benchmark_run_id for outcome in job.benchmark_outcomes or ()}
    seen: set[str] = set()
    follow = []
    for run in job.in_progress_runs or ():
        if run.benchmark_run_id not in finished and run.benchmark_run_id not in seen:
            seen.add(run.benchmark_run_id)
            follow.append(run.benchmark_run_id)
    return follow


async def fetch_snapshot(
    client: RunloopClient, job_id: str, clock: Clock, *, scenario_runs: bool, job_body: bytes | None = None
) -> Snapshot:
    """Fetch a job (and its unfinished runs' scenario runs) and stamp it with the observation time; `job_body` is
    the job's view when it was fetched already."""
    if job_body is None:
        job = await client.get_job(job_id)
    else:
        job = parse_body(f"/v1/benchmark_jobs/{job_id}", job_body, BenchmarkJobView)
    runs: dict[str, RunScenarios] = {}
    if scenario_runs and not job.is_terminal:
        for run_id in runs_to_follow(job):
            try:
                runs[run_id] = RunScenarios.build(decode_pages(run_id, await client.scenario_runs_raw(run_id)))
            except MALFORMED_PAGES as exc:  # this run's scenario events wait for a poll that reads; the job's go on
                log.warning("skipped the scenario runs of run %s this poll: %s", run_id, exc)
    return Snapshot(job=job, at_ms=clock.now_ms(), scenario_runs=runs)

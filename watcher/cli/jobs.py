"""`benchwatch jobs` and `benchwatch job`: what the API holds, read directly."""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from watcher.api.client import RunloopClient
from watcher.api.poll import fetch_snapshot
from watcher.cli.errors import UsageError
from watcher.cli.progress import n_done
from watcher.cli.retry_status import clear_status
from watcher.core.clock import SystemClock
from watcher.core.models import BenchmarkJobView, JobState
from watcher.core.printable import printable
from watcher.core.score import outcome_score

HEADER = f"{'ID':<26}  {'STATE':<12} {'CREATED (UTC)':<17}  {'DONE':>9}  NAME"
_GLOB_CHARS = frozenset("*?[")
_CONCURRENT_FETCHES = 8  # scenario runs of running jobs, fetched a few at a time


@dataclass(frozen=True, slots=True)
class JobRow:
    """One job as `benchwatch jobs` lists it."""

    job: BenchmarkJobView
    n_done: int

    @property
    def n_expected(self) -> int:
        """Scenarios the job will run in all (0 when its spec is unknown)."""
        return self.job.job_spec.n_expected if self.job.job_spec else 0

    @property
    def scores(self) -> dict[str, float | None]:
        """benchwatch's score of each finished run (watcher/core/score.py), by agent name (run id without one)."""
        job = self.job
        n_scenarios = len(job.job_spec.scenario_ids) if job.job_spec is not None else None
        return {
            outcome.agent_name or outcome.benchmark_run_id: outcome_score(outcome, n_scenarios)
            for outcome in job.benchmark_outcomes or ()
        }

    def as_json(self) -> str:
        """One line of `--json`."""
        job = self.job
        return json.dumps(
            {
                "id": job.id,
                "name": job.name,
                "state": job.state,
                "n_done": self.n_done,
                "n_expected": self.n_expected,
                "create_time_ms": job.create_time_ms,
                "failure_reason": job.failure_reason,
                "scores": self.scores,
            },
            ensure_ascii=False,
        )

    def as_text(self) -> str:
        """One row of the table (under `HEADER`)."""
        job = self.job
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(job.create_time_ms / 1000))
        done = f"{self.n_done}/{self.n_expected}"
        return printable(f"{job.id:<26}  {job.state:<12} {created:<17}  {done:>9}  {job.name}")


async def list_jobs(args: argparse.Namespace) -> int:
    """`benchwatch jobs`: a table of jobs, newest first (or JSON lines with --json)."""
    states = _states(args.state)
    async with RunloopClient(base_url=args.base_url) as client:
        picked = [job async for job in _matching(client, args.name, args.search, states, args.limit)]
        rows = await job_rows(client, picked)
    clear_status()
    if args.json:
        sys.stdout.write("".join(row.as_json() + "\n" for row in rows))
        return 0
    if not rows:
        print("no jobs" + (" match" if args.name or args.search or states else ""), file=sys.stderr)
        return 0
    print(HEADER)
    for row in rows:
        print(row.as_text())
    return 0


async def job_rows(client: RunloopClient, jobs: list[BenchmarkJobView]) -> list[JobRow]:
    """Each job with its progress; a running job's unfinished runs are counted from their scenario runs."""
    gate = asyncio.Semaphore(_CONCURRENT_FETCHES)

    async def row(job: BenchmarkJobView) -> JobRow:
        if job.is_terminal:
            return JobRow(job, n_done(job, {}))
        async with gate:
            snapshot = await fetch_snapshot(client, job.id, SystemClock(), scenario_runs=True)
        counts = {run_id: runs.counts for run_id, runs in snapshot.scenario_runs.items()}
        return JobRow(snapshot.job, n_done(snapshot.job, counts))

    return list(await asyncio.gather(*(row(job) for job in jobs)))


async def _matching(
    client: RunloopClient, name: str | None, search: str | None, states: frozenset[str], limit: int
) -> AsyncIterator[BenchmarkJobView]:
    """Jobs newest first that pass every filter, at most `limit`. The API filters exact names; globs are ours."""
    glob = name is not None and bool(_GLOB_CHARS & set(name))
    exact = None if glob else name
    if limit == 0:
        return
    shown = 0
    async for job in client.iter_jobs(name=exact, search=search, page_size=min(max(limit, 1), 5000)):
        if (states and job.state not in states) or (glob and not fnmatch.fnmatchcase(job.name, name or "")):
            continue
        yield job
        shown += 1
        if shown >= limit:
            return


def _states(raw: list[str] | None) -> frozenset[str]:
    """`--state running --state queued` or `--state running,queued`; a state the API does not have is refused (a
    typo would otherwise read as "no jobs match")."""
    states = frozenset(part.strip().lower() for value in raw or () for part in value.split(",") if part.strip())
    unknown = sorted(states - set(JobState.ALL))
    if unknown:
        names = ", ".join(repr(state) for state in unknown)
        raise UsageError(f"--state: no such job state {names}; the states are {', '.join(JobState.ALL)}")
    return states


async def show_job(args: argparse.Namespace) -> int:
    """`benchwatch job ID`: one job as one line of JSON, a line `benchwatch replay` reads."""
    async with RunloopClient(base_url=args.base_url) as client:
        job = await client.get_job(args.job_id)
    clear_status()
    print(json.dumps(job.model_dump(mode="json"), indent=2 if args.pretty else None, ensure_ascii=False))
    return 0

"""`benchwatch jobs` and `benchwatch job`: what the API holds, read directly."""

from __future__ import annotations

import argparse
import json
import sys
import time

from watcher.api.client import RunloopClient
from watcher.core.models import BenchmarkJobView


async def list_jobs(args: argparse.Namespace) -> int:
    """`benchwatch jobs`: a table of jobs, newest first."""
    async with RunloopClient(base_url=args.base_url) as client:
        shown = 0
        async for job in client.iter_jobs(name=args.name, search=args.search, page_size=min(max(args.limit, 1), 5000)):
            if shown >= args.limit:
                break
            print(_job_line(job))
            shown += 1
    if shown == 0:
        print("no jobs", file=sys.stderr)
    return 0


async def show_job(args: argparse.Namespace) -> int:
    """`benchwatch job ID`: one job as JSON."""
    async with RunloopClient(base_url=args.base_url) as client:
        job = await client.get_job(args.job_id)
    print(json.dumps(job.model_dump(mode="json"), indent=2))
    return 0


def _job_line(job: BenchmarkJobView) -> str:
    outcomes = job.benchmark_outcomes or ()
    done = sum(o.n_completed + o.n_failed + o.n_timeout for o in outcomes)
    expected = job.job_spec.n_expected if job.job_spec else 0
    created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(job.create_time_ms / 1000))
    return f"{job.id}  {job.state:<12} {created}Z  {done:>4}/{expected:<4} {job.name}"

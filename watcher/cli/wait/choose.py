"""`benchwatch wait` with no job named: `--latest`, or the running jobs listed at a terminal to pick one from."""

from __future__ import annotations

import sys

from watcher.api.client import RunloopClient
from watcher.cli.errors import UsageError
from watcher.cli.jobs import JobRow, job_rows
from watcher.cli.retry_status import clear_status
from watcher.core.models import BenchmarkJobView, JobState

PICK_FROM = 20  # running jobs offered at the prompt, newest first


async def choose_job(client: RunloopClient, *, latest: bool) -> str:
    """`--latest`: the newest running job. No job named, at a terminal: the running jobs, to pick one from."""
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if not latest and not interactive:
        raise UsageError("give JOB_ID, --name or --latest (at a terminal, wait lists the running jobs to pick from)")
    running = await _running_jobs(client, 1 if latest else PICK_FROM)
    clear_status()
    if not running:
        raise UsageError("no job is running: give JOB_ID or --name to wait for another")
    if latest:
        return running[0].id
    return _prompt(await job_rows(client, running))


async def _running_jobs(client: RunloopClient, at_most: int) -> list[BenchmarkJobView]:
    found: list[BenchmarkJobView] = []
    async for job in client.iter_jobs(page_size=100):
        if job.state == JobState.RUNNING:
            found.append(job)
            if len(found) >= at_most:
                break
    return found


def _prompt(rows: list[JobRow]) -> str:
    """Number the jobs, read a choice from the terminal (Ctrl-C or an empty answer cancels)."""
    print("running jobs, newest first:")
    for number, row in enumerate(rows, 1):
        print(f"  {number:>2}  {row.as_text()}")
    while True:
        try:
            answer = input(f"wait for which job? [1-{len(rows)}, Enter to cancel] ").strip()
        except EOFError:
            answer = ""
        if not answer:
            raise UsageError("no job picked")
        if answer.isdigit() and 1 <= int(answer) <= len(rows):
            return rows[int(answer) - 1].job.id
        print(f"  answer a number from 1 to {len(rows)}")

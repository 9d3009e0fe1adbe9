"""`benchwatch wait` from the command line: arguments in, the job picked, the loop and a view wired, the exit code
out. SIGINT and SIGTERM end the wait in order: the summary so far, the JUnit file, then exit 130 / 143."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from watcher.api.client import RunloopClient
from watcher.cli.errors import UsageError
from watcher.cli.jobs import JobRow, job_rows
from watcher.cli.retry_status import clear_status
from watcher.cli.wait.loop import run_wait
from watcher.cli.wait.model import options_from_args
from watcher.cli.wait.views import view_for_stdout
from watcher.core.models import BenchmarkJobView, JobState

PICK_FROM = 20  # running jobs offered at the prompt, newest first


async def wait_command(args: argparse.Namespace) -> int:
    """`benchwatch wait`: the exit code says how the job ended (see docs/wait.md)."""
    async with RunloopClient(base_url=args.base_url) as client:
        if args.job_id is None and args.name is None:
            args.job_id = await _choose_job(client, latest=args.latest)
        options = options_from_args(args)
        loop = asyncio.get_running_loop()
        interrupt: asyncio.Future[int] = loop.create_future()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, _first_signal, interrupt, int(signum))
        try:
            result = await run_wait(client, options, view_for_stdout(json_lines=args.json), interrupt=interrupt)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
    return result.exit_code


def _first_signal(interrupt: asyncio.Future[int], signum: int) -> None:
    if not interrupt.done():
        interrupt.set_result(signum)


async def _choose_job(client: RunloopClient, *, latest: bool) -> str:
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

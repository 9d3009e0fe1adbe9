"""`benchwatch wait` from the command line: arguments in, the job picked, the loop and a view wired, the exit code
out. SIGINT and SIGTERM end the wait in order: the summary so far, the JUnit file, then exit 130 / 143."""

from __future__ import annotations

import argparse
import asyncio
import signal

from watcher.api.client import RunloopClient
from watcher.cli.wait.first import check_args, first_look
from watcher.core.clock import SystemClock


async def wait_command(args: argparse.Namespace) -> int:
    """`benchwatch wait`: the exit code says how the job ended (see docs/wait.md)."""
    checked = check_args(args)
    clock = SystemClock()
    async with RunloopClient(base_url=args.base_url) as client:
        if args.job_id is None and args.name is None:
            args.job_id = await _choose_job(client, latest=args.latest)
        # By id, the first request goes out before the rest of `wait` is imported (watcher/cli/wait/first.py); by
        # --name it is a list page, parsed at once, so there is nothing to win.
        first = await first_look(client, args.job_id, clock) if args.job_id is not None else None
        from watcher.cli.wait.loop import run_wait
        from watcher.cli.wait.model import options_from_args
        from watcher.cli.wait.views import view_for_stdout

        options = options_from_args(args, checked)
        loop = asyncio.get_running_loop()
        interrupt: asyncio.Future[int] = loop.create_future()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, _first_signal, interrupt, int(signum))
        try:
            view = view_for_stdout(json_lines=args.json)
            result = await run_wait(client, options, view, clock=clock, interrupt=interrupt, first=first)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
    return result.exit_code


def _first_signal(interrupt: asyncio.Future[int], signum: int) -> None:
    if not interrupt.done():
        interrupt.set_result(signum)


async def _choose_job(client: RunloopClient, *, latest: bool) -> str:
    """`--latest`: the newest running job. No job named, at a terminal: the running jobs, to pick one from."""
    from watcher.cli.wait.choose import choose_job  # the models and the job table: only when no job is named

    return await choose_job(client, latest=latest)

"""`benchwatch wait` from the command line: arguments in, the loop and a view wired, the exit code out."""

from __future__ import annotations

import argparse

from watcher.api.client import RunloopClient
from watcher.cli.wait.loop import run_wait
from watcher.cli.wait.model import options_from_args
from watcher.cli.wait.views import view_for_stdout


async def wait_command(args: argparse.Namespace) -> int:
    """`benchwatch wait`: the exit code says how the job ended (see docs/wait.md)."""
    options = options_from_args(args)
    async with RunloopClient(base_url=args.base_url) as client:
        result = await run_wait(client, options, view_for_stdout(json_lines=args.json))
    return result.exit_code

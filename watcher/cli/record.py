"""`benchwatch record`: poll jobs and write what is seen as replay lines, until they finish or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable

from watcher.api.client import RunloopClient
from watcher.api.errors import TransientApiError
from watcher.api.poll import fetch_snapshot, runs_to_follow
from watcher.cli.errors import UsageError, open_for_writing
from watcher.cli.retry_status import clear_status
from watcher.cli.signals import stop_on_signals
from watcher.cli.wait.defaults import LATE_POLLS
from watcher.config.durations import parse_duration_ms
from watcher.core.clock import Clock, SystemClock
from watcher.core.snapshot import Snapshot
from watcher.pipeline.recording import SnapshotRecorder

Sleep = Callable[[float], Awaitable[None]]


async def record(args: argparse.Namespace) -> int:
    """`benchwatch record JOB_ID ... --out FILE`: exit 0 when every job finished or on Ctrl-C / SIGTERM."""
    try:
        interval_ms = parse_duration_ms(args.interval)
    except ValueError as exc:
        raise UsageError(f"--interval: {exc}") from None
    if interval_ms < 100:
        raise UsageError("--interval must be at least 100ms")
    stop = stop_on_signals()
    with open_for_writing(args.out, "--out") as file:
        recorder = SnapshotRecorder(file)
        async with RunloopClient(base_url=args.base_url) as client:
            finished = await record_jobs(client, args.job_ids, recorder, interval_ms, stop=stop)
    clear_status()
    ended = "every job finished" if finished else "stopped"
    print(f"{ended}: {recorder.written} snapshots of {len(args.job_ids)} jobs in {args.out}", file=sys.stderr)
    return 0


async def record_jobs(
    client: RunloopClient,
    job_ids: list[str],
    recorder: SnapshotRecorder,
    interval_ms: int,
    *,
    stop: asyncio.Event,
    clock: Clock | None = None,
    sleep: Sleep | None = None,
) -> bool:
    """Poll each job every `interval_ms` and record its snapshots; True when all finished, False when stopped.

    A finished job whose runs still lack outcomes is polled a few more times (they land a poll or two late).
    """
    clock = clock or SystemClock()
    late: dict[str, int] = {}
    pending = list(dict.fromkeys(job_ids))
    while pending and not stop.is_set():
        for job_id in list(pending):
            snapshot = await _poll(client, job_id, clock)
            if snapshot is None:
                continue
            recorder.write(snapshot)
            if snapshot.job.is_terminal:
                late[job_id] = late.get(job_id, 0) + 1
                if not runs_to_follow(snapshot.job) or late[job_id] > LATE_POLLS:
                    pending.remove(job_id)
        if pending:
            await _pause(stop, interval_ms / 1000, sleep)
    return not pending


async def _poll(client: RunloopClient, job_id: str, clock: Clock) -> Snapshot | None:
    """One snapshot, with every in-progress run's scenario runs; None after a transient failure (said, not fatal)."""
    try:
        return await fetch_snapshot(client, job_id, clock, scenario_runs=True)
    except TransientApiError as exc:
        clear_status()
        print(f"benchwatch: warning: {exc}; recording goes on", file=sys.stderr)
        return None


async def _pause(stop: asyncio.Event, seconds: float, sleep: Sleep | None) -> None:
    if sleep is not None:
        await sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)

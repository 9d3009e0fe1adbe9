"""`benchwatch demo`: the simulator in-process, its four demo jobs, and a watch over them until they settle.

This first demo prints what the client sees change; the full pipeline (diff → rules → notifiers) replaces
the printing as it lands.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp import web

from watcher.client import RunloopClient
from watcher.clock import ScaledClock
from watcher.errors import RunloopApiError
from watcher.models import BenchmarkJobView
from watcher.simulator import Simulator, create_app, demo_specs


@dataclass
class _Seen:
    """What the demo last printed about one job."""

    state: str = ""
    finished_runs: set[str] = field(default_factory=set)
    last_change_s: float = 0.0


async def run_demo(*, seed: int, speed: float, interval_s: float, max_seconds: float) -> int:
    """Run the demo; returns the exit code."""
    sim = Simulator(seed=seed, clock=ScaledClock(speed=speed))
    job_ids = [sim.add_job(spec).job_id for spec in demo_specs()]
    runner = web.AppRunner(create_app(sim), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base_url = f"http://127.0.0.1:{port}"
    print(f"benchwatch demo: simulated Runloop API on {base_url}, {speed:g}x real time, {len(job_ids)} jobs")
    try:
        async with RunloopClient(base_url=base_url, api_key="demo") as client:
            await _watch(client, job_ids, interval_s, max_seconds)
    finally:
        await runner.cleanup()
    return 0


async def _watch(client: RunloopClient, job_ids: list[str], interval_s: float, max_seconds: float) -> None:
    seen = {job_id: _Seen() for job_id in job_ids}
    started = time.monotonic()
    latest: dict[str, BenchmarkJobView] = {}
    while time.monotonic() - started < max_seconds:
        for job_id in job_ids:
            try:
                job = await client.get_job(job_id)
            except RunloopApiError as exc:
                print(f"  ! {job_id}: {exc}")
                continue
            latest[job_id] = job
            if _report(job, seen[job_id]):
                seen[job_id].last_change_s = time.monotonic() - started
        if all(job.is_terminal for job in latest.values() if job.name != "demo-stalls") and len(latest) == len(job_ids):
            break
        await asyncio.sleep(interval_s)
    _summary(latest.values(), seen, time.monotonic() - started)


def _report(job: BenchmarkJobView, seen: _Seen) -> bool:
    changed = False
    if job.state != seen.state:
        reason = f" ({job.failure_reason})" if job.failure_reason else ""
        print(f"  {job.name}: {seen.state or 'discovered'} -> {job.state}{reason}")
        seen.state, changed = job.state, True
    for outcome in job.benchmark_outcomes or ():
        if outcome.benchmark_run_id in seen.finished_runs:
            continue
        seen.finished_runs.add(outcome.benchmark_run_id)
        score = "n/a" if outcome.average_score is None else f"{outcome.average_score:.2f}"
        print(
            f"  {job.name}: run of {outcome.agent_name} finished: score {score}, "
            f"{outcome.n_completed} completed, {outcome.n_failed} failed, {outcome.n_timeout} timed out"
        )
        changed = True
    return changed


def _summary(jobs: Iterable[BenchmarkJobView], seen: dict[str, _Seen], elapsed_s: float) -> None:
    print(f"\nsummary after {elapsed_s:.0f}s:")
    for job in jobs:
        quiet_s = elapsed_s - seen[job.id].last_change_s
        note = f"  (no change for {quiet_s:.0f}s: stalled?)" if job.state == "running" else ""
        print(f"  {job.name:<28} {job.state}{note}")

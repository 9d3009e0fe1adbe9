"""`benchwatch demo`: the simulator in-process, its four demo jobs, and the watcher's pipeline over them.

It polls through the real client, diffs through the real tracker into an in-memory store, and prints each event
as it comes; rules and notifiers join the same path as they land.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from aiohttp import web

from watcher.client import RunloopClient
from watcher.clock import ScaledClock
from watcher.errors import RunloopApiError
from watcher.eventlines import event_line
from watcher.poll import fetch_snapshot
from watcher.simulator import Simulator, create_app, demo_specs
from watcher.store import SQLiteStore
from watcher.tracker import JobTracker


async def run_demo(*, seed: int, speed: float, interval_s: float, max_seconds: float) -> int:
    """Run the demo; returns the exit code."""
    clock = ScaledClock(speed=speed)
    sim = Simulator(seed=seed, clock=clock, api_key="demo-key")
    job_ids = [sim.add_job(spec).job_id for spec in demo_specs()]
    runner = web.AppRunner(create_app(sim), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base_url = site.name
    print(f"benchwatch demo: simulated Runloop API on {base_url}, {speed:g}× real time, {len(job_ids)} jobs")
    print("every event the watcher sees is printed as it comes; Ctrl-C stops early\n", flush=True)
    try:
        async with RunloopClient(base_url=base_url, api_key="demo-key") as client, SQLiteStore(":memory:") as store:
            tracker = JobTracker(store)
            await _watch(
                client=client,
                tracker=tracker,
                clock=clock,
                job_ids=job_ids,
                interval_s=interval_s,
                max_seconds=max_seconds,
            )
    finally:
        await runner.cleanup()
    return 0


async def _watch(
    *,
    client: RunloopClient,
    tracker: JobTracker,
    clock: ScaledClock,
    job_ids: list[str],
    interval_s: float,
    max_seconds: float,
) -> None:
    started = time.monotonic()
    told: Counter[str] = Counter()
    while time.monotonic() - started < max_seconds:
        for job_id in job_ids:
            try:
                snapshot = await fetch_snapshot(client, job_id, clock, scenario_runs=True)
            except RunloopApiError as exc:
                print(f"  ! {job_id}: {exc}")
                continue
            for event in (await tracker.observe(snapshot)).events:
                told[event.kind] += 1
                print(f"  [{time.monotonic() - started:5.1f}s] {event_line(event)}", flush=True)
        if _settled(tracker, job_ids, clock.now_ms()):
            break
        await asyncio.sleep(interval_s)
    _summary(tracker, job_ids, told, time.monotonic() - started, clock.now_ms())


def _settled(tracker: JobTracker, job_ids: list[str], now_ms: int) -> bool:
    """Every job finished, or quiet for 20 simulated minutes (the stalled one)."""
    for job_id in job_ids:
        memory = tracker.memory(job_id)
        if memory is None or (not memory.finished and now_ms - memory.last_change_ms < 20 * 60_000):
            return False
    return True


def _summary(tracker: JobTracker, job_ids: list[str], told: Counter[str], elapsed_s: float, now_ms: int) -> None:
    print(f"\nsummary after {elapsed_s:.0f}s ({sum(told.values())} events):")
    for job_id in job_ids:
        memory = tracker.memory(job_id)
        if memory is None:
            continue
        counters = memory.counters
        note = ""
        if not memory.finished:
            quiet_min = (now_ms - memory.last_change_ms) / 60_000
            note = f"  — no change for {quiet_min:.0f} simulated minutes: stalled"
        print(
            f"  {memory.job_name:<24} {memory.state:<10} {counters.n_done}/{counters.n_expected} done, "
            f"{counters.n_failed} failed, {counters.n_timeout} timed out{note}"
        )
    print("  events: " + ", ".join(f"{kind} ×{count}" for kind, count in sorted(told.items())))

"""`LoopScheduler`: APScheduler's jobs run on their intervals, and its timer no longer reaches the loop through
`call_soon_threadsafe` (a self-pipe write and one more turn of the loop at every run)."""

from __future__ import annotations

import asyncio
from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from tests.loopprobe import CountingThreadsafe
from watcher.app.scheduler import LoopScheduler

RUNS = 5
DEADLINE_S = 10


async def _runs_and_hops(scheduler_type: type[AsyncIOScheduler]) -> tuple[list[int], int]:
    """Start `scheduler_type` with two interval jobs; once each has run RUNS times, how often each ran and how many
    thread-safe calls the loop took meanwhile."""
    loop = asyncio.get_running_loop()
    runs = [0, 0]
    done = asyncio.Event()

    async def job(index: int) -> None:
        runs[index] += 1
        if min(runs) >= RUNS:
            done.set()

    scheduler = scheduler_type(timezone=UTC)
    scheduler.add_job(job, "interval", args=[0], seconds=0.02, max_instances=1, coalesce=True)
    scheduler.start()
    scheduler.add_job(job, "interval", args=[1], seconds=0.03, max_instances=1, coalesce=True)  # added while running
    with CountingThreadsafe(loop) as counter:
        await asyncio.wait_for(done.wait(), DEADLINE_S)
        hops = counter.calls
    scheduler.shutdown(wait=False)
    return runs, hops


async def test_jobs_run_on_their_intervals_without_a_thread_safe_hop() -> None:
    runs, hops = await _runs_and_hops(LoopScheduler)
    assert min(runs) >= RUNS
    assert hops == 0


async def test_apschedulers_own_timer_hops_at_every_run() -> None:
    """The probe above can see the hop: APScheduler's own scheduler takes one at every timer."""
    runs, hops = await _runs_and_hops(AsyncIOScheduler)
    assert min(runs) >= RUNS
    assert hops >= RUNS

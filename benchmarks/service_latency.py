"""Detection latency with the real service: `Service` polling on its interval (APScheduler), the simulator's clock
moved at a random moment of the interval, and the time until the receiver holds each changed job's notification."""

from __future__ import annotations

import asyncio
import logging
import random
import time

from benchmarks.hookrecv import Arrival, ReceiverClient
from benchmarks.simproc import SimControl
from watcher.app.config import LoadedConfig
from watcher.app.cycle import CycleReport
from watcher.app.service import Service

CYCLE_DEADLINE_S = 600.0


class _ObservedService(Service):
    """The service, telling when each of its poll cycles started and ended."""

    def __init__(self, loaded: LoadedConfig) -> None:
        super().__init__(loaded)
        self.cycles: list[tuple[float, float]] = []
        self.cycle_ended = asyncio.Event()

    async def poll_once(self) -> CycleReport:
        started = time.monotonic()
        report = await super().poll_once()
        self.cycles.append((started, time.monotonic()))
        self.cycle_ended.set()
        return report

    async def cycle_started_after(self, moment_s: float) -> None:
        """Wait until a cycle that started after `moment_s` has ended."""
        async with asyncio.timeout(CYCLE_DEADLINE_S):
            while not any(started >= moment_s for started, _ in self.cycles):
                self.cycle_ended.clear()
                await self.cycle_ended.wait()


def first_arrivals(arrivals: list[Arrival], moment_s: float) -> list[float]:
    """Per job, seconds from `moment_s` to its first notification after it."""
    first: dict[str | None, float] = {}
    for arrival in arrivals:
        if arrival.at_s >= moment_s:
            first[arrival.job_id] = min(first.get(arrival.job_id, arrival.at_s), arrival.at_s)
    return [at_s - moment_s for at_s in first.values()]


async def service_latencies(
    loaded: LoadedConfig, sim: SimControl, receiver: ReceiverClient, *, samples: int, advance_ms: int, seed: int
) -> list[float]:
    """Run the service on the watcher's state; move the clock `samples` times; per-job latencies in seconds."""
    for name in ("apscheduler", "benchwatch.service"):  # skipped runs of a slow cycle are expected here
        logging.getLogger(name).setLevel(logging.ERROR)
    rng = random.Random(seed)
    interval_s = loaded.config.watch.poll_interval_ms / 1000
    service = _ObservedService(loaded)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop), name="service")
    latencies: list[float] = []
    try:
        await service.cycle_started_after(time.monotonic())
        for _ in range(samples):
            await asyncio.sleep(rng.uniform(0, interval_s))
            before = await receiver.count()
            moved_s = time.monotonic()
            await sim.advance(advance_ms)
            await service.cycle_started_after(moved_s)
            await service.worker.drain()
            latencies.extend(first_arrivals(await receiver.arrivals(before), moved_s))
    finally:
        stop.set()
        await task
    return latencies

"""What a poll cycle costs the watcher at scale — `poll-small`, `poll-large`, `poll-many` — side by side with the
floor (orjson / BLAKE2b of the same bytes) and the naive SDK poller, plus detection latency and peak RSS.

Per workload: the simulator (own process, manual clock) gets the jobs; the watcher, built in this process, runs a
few warm-up cycles (discovery, finished jobs coming to rest), then cycles with the clock still (unchanged) and
cycles after moving it (changed). After each cycle the floor fetches the same URLs again, and the naive poller
(own process) polls the same state. Last, the real service polls every second for the detection latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import report, table, workloads
from benchmarks.floor import measure_floor
from benchmarks.hookrecv import ReceiverClient
from benchmarks.measure import peak_rss_mb, reset_peak_rss
from benchmarks.rig import WatcherRig, write_config
from benchmarks.service_latency import first_arrivals, service_latencies
from benchmarks.simproc import Child, NaiveProcess, SimControl, start_child, start_simulator
from benchmarks.workloads import Workload
from watcher.app.config import LoadedConfig

WARMUP_CYCLES = 3  # discovery, then each finished job's confirming poll, then at rest


class Setup:
    """The processes and clients of one workload's measurement."""

    def __init__(self, sim: SimControl, receiver: ReceiverClient, naive: NaiveProcess | None, loaded: LoadedConfig):
        self.sim = sim
        self.receiver = receiver
        self.naive = naive
        self.loaded = loaded
        self.session = sim.session


@contextlib.asynccontextmanager
async def started(workload: Workload, *, naive: bool = True) -> AsyncIterator[Setup]:
    """The simulator with the workload's jobs, the webhook receiver, the naive poller (each in its own process),
    and the watcher's config file in a temporary folder; all stopped and removed afterwards."""
    async with contextlib.AsyncExitStack() as stack:
        # Started side by side: each spends a second or so importing before it answers.
        children = await asyncio.gather(
            start_simulator(workload.seed),
            start_child(["-m", "benchmarks.hookrecv", "--port", "{port}"], ready_path="/ready"),
            return_exceptions=True,
        )
        for child in children:
            if isinstance(child, Child):
                stack.push_async_callback(child.stop)
        sim_child, hook_child = (_started(child) for child in children)
        session = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900)))
        sim = SimControl(session, sim_child.url)
        for batch in workload.batches:
            await sim.add_workload(batch)
        naive_process = None
        if naive:
            naive_process = await NaiveProcess.start(sim_child.url)
            stack.push_async_callback(naive_process.stop)
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="benchwatch-bench-")))
        receiver = ReceiverClient(session, hook_child.url)
        yield Setup(sim, receiver, naive_process, write_config(folder, sim_child.url, receiver.hook_url))


def _started(child: Child | BaseException) -> Child:
    if isinstance(child, BaseException):
        raise child
    return child


async def measure(workload: Workload, *, control: bool = False) -> dict[str, Any]:
    """Measure one workload; the figures as JSON-ready data. A `control` is measured for its watcher cycles alone
    (what `many` is compared with): no naive poller, no service latency — nothing reads them."""
    async with started(workload, naive=not control) as setup:
        cycles, memory = await _manual_cycles(workload, setup)
        latencies_s = [] if control else await service_latencies(
            setup.loaded, setup.sim, setup.receiver, samples=workload.service_samples, advance_ms=workload.advance_ms,
            seed=1,
        )  # fmt: skip
    return report.summarize(workload, cycles, memory, latencies_s)


async def _manual_cycles(workload: Workload, setup: Setup) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    reset_peak_rss()
    async with WatcherRig(setup.loaded) as rig:
        warmup = [asdict(await rig.run_cycle()) for _ in range(WARMUP_CYCLES)]
        startup_peak = peak_rss_mb()
        naive_startup = await setup.naive.poll() if setup.naive is not None else None
        reset_peak_rss()
        progress = await setup.sim.progress()
        cycles = []
        plan = [("unchanged", 0, i < workload.naive_unchanged) for i in range(workload.unchanged_cycles)]
        plan += [("changed", workload.advance_ms, i < workload.naive_changed) for i in range(workload.changed_cycles)]
        for kind, advance_ms, with_naive in plan:
            cycle, progress = await _cycle(rig, setup, advance_ms, progress, with_naive)
            cycles.append({"kind": kind, **cycle})
        steady_peak = peak_rss_mb()
    memory = {
        "startup_peak_rss_mb": startup_peak,
        "steady_peak_rss_mb": steady_peak,
        "warmup": warmup,
        "naive_startup": naive_startup,
    }
    return cycles, memory


async def _cycle(
    rig: WatcherRig, setup: Setup, advance_ms: int, progress: dict[str, Any], with_naive: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One measured cycle: move the clock (or not), poll, then the floor and the naive poller on the same state."""
    stats_before = await setup.sim.stats()
    arrivals_before = await setup.receiver.count()
    moved_s = time.monotonic()
    if advance_ms:
        await setup.sim.advance(advance_ms)
    sample = await rig.run_cycle()
    stats_after = await setup.sim.stats()
    served = stats_after["requests"] - stats_before["requests"]
    floor = await measure_floor(setup.session, setup.sim.base_url, await setup.sim.last_requests(served))
    latencies_s = first_arrivals(await setup.receiver.arrivals(arrivals_before), moved_s) if advance_ms else []
    naive = await setup.naive.poll() if with_naive and setup.naive is not None else None
    after = await setup.sim.progress()
    cycle = {
        **asdict(sample),
        "sim_requests": served,
        "bytes": stats_after["response_bytes"] - stats_before["response_bytes"],
        "floor": asdict(floor),
        "naive": naive,
        "latencies_ms": [round(s * 1000, 2) for s in latencies_s],
        "progress": {key: after[key] - progress[key] for key in after if key != "now_ms"},
    }
    return cycle, after


async def run_small(*, quick: bool = False) -> dict[str, Any]:
    """`poll-small`."""
    return table.print_workload(await measure(workloads.small(quick)))


async def run_large(*, quick: bool = False) -> dict[str, Any]:
    """`poll-large`."""
    return table.print_workload(await measure(workloads.large(quick)))


async def run_many(*, quick: bool = False) -> dict[str, Any]:
    """`poll-many`, with its control (the running jobs alone) for what the terminal ones cost."""
    figures = await measure(workloads.many(quick))
    figures["control"] = await measure(workloads.many(quick, terminal=False), control=True)
    report.add_terminal_cost(figures)
    return table.print_workload(figures)

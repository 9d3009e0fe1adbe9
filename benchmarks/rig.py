"""The watcher under test, built in the benchmark process the way `benchwatch run` builds it: the RunloopClient on
a shared session, a JobTracker with the Router and a SQLite store, the PollCycle, and the delivery worker sending
every event, through one rule, to the webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from benchmarks.measure import GcTimer, Stopwatch
from benchmarks.simproc import API_KEY
from rules.engine import Router
from watcher.api.client import RequestLimits, RunloopClient
from watcher.api.health import ApiHealth
from watcher.app.config import LoadedConfig, load_config
from watcher.app.cycle import PollCycle
from watcher.app.delivery import build_worker
from watcher.core.clock import SystemClock
from watcher.diff.summary import dashboard_url_for
from watcher.pipeline.tracker import JobTracker
from watcher.store.sqlite import SQLiteStore

POLL_INTERVAL_S = 1

# No request pacing (the default, 20 requests/s, would add requests/20 seconds of wall time to every cycle), no
# jitter (it would add up to 10 % of the interval to the detection latency). `state` is a YAML flow mapping: the
# poll benchmarks keep SQLite in the folder; `ha` gives SQLite or PostgreSQL (benchmarks/replicas.py).
DISCOVER_ALL = "discover: {name: '*', created_within: 7d, max_jobs: 20000}"  # `select`: which jobs are watched
CONFIG = """\
runloop: {{base_url: '{base_url}', api_key: '{api_key}'}}
watch:
  {select}
  poll_interval: {interval_s}s
  jitter: 0
  max_requests_per_s: null
state: {state}
http: {{enabled: false}}
notifiers:
  hook: {{type: webhook, url: '{hook_url}'}}
rules:
  - {{name: everything, on: '*', notify: hook}}
"""


def write_config(folder: Path, base_url: str, hook_url: str) -> LoadedConfig:
    """The benchmark's config file in `folder`, loaded."""
    path = folder / "benchwatch.yaml"
    text = CONFIG.format(
        base_url=base_url,
        api_key=API_KEY,
        hook_url=hook_url,
        interval_s=POLL_INTERVAL_S,
        state="{path: ./state.db}",
        select=DISCOVER_ALL,
    )
    path.write_text(text)
    return load_config(path, {})


@dataclass
class CycleSample:
    """What one poll cycle cost, from its start until the receiver holds every notification it made."""

    cpu_s: float
    cpu_poll_s: float  # until `PollCycle.run()` returned
    wall_s: float
    wall_poll_s: float
    requests: int
    polled: int
    failed: int
    events: int
    notifications: int
    kinds: dict[str, int] = field(default_factory=dict)
    gc_s: float = 0.0  # CPU seconds the garbage collector took during the cycle


class WatcherRig:
    """The watcher's parts, open for as long as the `async with` lasts."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        self._exits = contextlib.AsyncExitStack()

    async def __aenter__(self) -> WatcherRig:
        config, clock = self.loaded.config, SystemClock()
        store = await self._exits.enter_async_context(SQLiteStore(self.loaded.state_path()))
        session = await self._exits.enter_async_context(aiohttp.ClientSession())
        base_url = config.runloop.resolved_base_url({})
        self.client = RunloopClient(
            base_url=base_url,
            api_key=config.runloop.api_key,
            session=session,
            limits=RequestLimits(config.watch.max_concurrent_requests, config.watch.max_requests_per_s),
            clock=clock,
        )
        self.tracker = JobTracker(
            store, router=Router(config.rules, config.silences), dashboard_url=dashboard_url_for(base_url)
        )
        await self.tracker.load_memories()
        self.worker = build_worker(config, store, session, clock)
        self.cycle = PollCycle(
            watch=config.watch,
            client=self.client,
            tracker=self.tracker,
            clock=clock,
            health=ApiHealth(config.watch.api_unreachable_after_ms),
            on_notifications=self.worker.wake,
        )
        worker_task = asyncio.create_task(self.worker.run(), name="delivery worker")
        self._exits.push_async_callback(self._stop_worker, worker_task)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._exits.aclose()

    async def _stop_worker(self, task: asyncio.Task[None]) -> None:
        await self.worker.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def run_cycle(self) -> CycleSample:
        """One poll cycle, then every notification it made delivered."""
        requests_before = self.client.requests_made
        with GcTimer() as collections:
            watch = Stopwatch.start()
            report = await self.cycle.run()
            cpu_poll_s, wall_poll_s = watch.cpu_s(), watch.wall_s()
            await self.worker.drain()
        return CycleSample(
            gc_s=collections.cpu_s,
            cpu_s=watch.cpu_s(),
            cpu_poll_s=cpu_poll_s,
            wall_s=watch.wall_s(),
            wall_poll_s=wall_poll_s,
            requests=self.client.requests_made - requests_before,
            polled=report.polled,
            failed=report.failed,
            events=len(report.events),
            notifications=report.notifications,
            kinds=dict(Counter(event.kind for event in report.events)),
        )

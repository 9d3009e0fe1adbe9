"""End to end, as an operator runs it: `benchwatch run` as a process, the simulator on an accelerated clock, a
webhook receiver. One smoke test of a whole lifecycle, and one real kill -9 and restart.

Everything else about the service is tested in process on a manual clock (tests/test_service.py). Here, to stay
robust on a busy machine: every port is 0 (the watcher logs the one it bound); the simulated jobs are created only
once the watcher's /readyz answers; the simulator's clock is manual and moves one step each time the watcher starts
a poll cycle (its list request), so however slow the machine, the watcher sees every job before it ends and at
every step of its life; a timeout says which notifications arrived and which were expected; and no process outlives
its test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from notifiers.worker import RECORD_WINDOW
from tests.conftest import ServerFactory
from tests.fakes.webhook import WebhookReceiver
from tests.lifecycle import (
    API_KEY,
    CONCURRENCY,
    SECRET,
    Key,
    add_jobs,
    all_finished,
    difference,
    expected,
    received,
    unique,
    write_config,
)
from watcher.core.clock import ManualClock
from watcher.core.records import DeliveryOutcome
from watcher.simulator import Simulator, create_app
from watcher.store.postgres import PostgresStore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STEP_MS = 240_000  # simulated time per poll cycle of the watcher
START_DEADLINE_S = 60.0
_BOUND = re.compile(r"status endpoint on (http://\S+)")


class Watcher:
    """One `benchwatch run` process; its log goes to a file (a pipe nobody reads could fill and block it)."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.config, self.log_path = config, log_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> str:
        """Start it and wait until /readyz answers 200; returns the status endpoint's address."""
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "watcher", "run", "--config", str(self.config), cwd=self.config.parent,
                stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        address = await self._until(self._bound_address, "the status endpoint's address in the log")
        async with aiohttp.ClientSession() as http:
            await self._until_ready(http, f"{address}/readyz")
        return address

    def log(self) -> str:
        """What it has logged so far."""
        return self.log_path.read_text(errors="replace")

    def _bound_address(self) -> str | None:
        found = _BOUND.findall(self.log())
        return found[-1] if found else None

    async def _until_ready(self, http: aiohttp.ClientSession, url: str) -> None:
        async def ready() -> bool:
            try:
                async with http.get(url) as answer:
                    return answer.status == 200
            except aiohttp.ClientConnectionError:
                return False

        deadline = time.monotonic() + START_DEADLINE_S
        while not await ready():
            self._check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer 200 within {START_DEADLINE_S:.0f}s:\n{self.log()[-2000:]}")
            await asyncio.sleep(0.05)

    async def _until(self, probe: Callable[[], str | None], what: str) -> str:
        deadline = time.monotonic() + START_DEADLINE_S
        while (found := probe()) is None:
            self._check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.log()[-2000:]}")
            await asyncio.sleep(0.05)
        return found

    def _check_alive(self) -> None:
        if self.process is not None and self.process.returncode is not None:
            raise AssertionError(f"benchwatch run exited {self.process.returncode}:\n{self.log()[-2000:]}")

    async def terminate(self) -> int:
        """SIGTERM, and its exit code (killed after 30 s)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout=30)
        finally:
            await self.kill()

    async def kill(self) -> None:
        """SIGKILL unless it has exited, and reap it."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


class World:
    """The simulator on a manual clock that the watcher's cycles move, and a webhook receiver, on real local ports."""

    def __init__(self, clock: ManualClock, sim: Simulator, receiver: WebhookReceiver) -> None:
        self.clock, self.sim, self.receiver = clock, sim, receiver
        self.config = Path()
        self.cycles = 0  # list requests seen: each poll cycle of the watcher starts with one (discovery)
        self.step_ms = STEP_MS  # simulated time per cycle
        self._cycle_started = asyncio.Event()

    @web.middleware
    async def count_cycles(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count the watcher's cycles, by their list requests."""
        if request.path == "/v1/benchmark_jobs" and request.method == "GET":
            self.cycles += 1
            self._cycle_started.set()
        return await handler(request)

    async def pace(self) -> None:
        """For ever: move the clock one step each time a new cycle starts (cancelled by the caller)."""
        seen = self.cycles
        while True:
            self._cycle_started.clear()
            if self.cycles == seen:
                await self._cycle_started.wait()
            seen = self.cycles
            self.clock.advance(self.step_ms)

    async def until_all_told(self, deadline_s: float = 90.0) -> Counter[Key]:
        """Wait until the jobs have ended and every notification they call for has arrived."""
        deadline = time.monotonic() + deadline_s
        while not (all_finished(self.sim) and received(self.receiver) == expected(self.sim)):
            if time.monotonic() > deadline:
                state = "the jobs ended" if all_finished(self.sim) else "the jobs are still running"
                told = difference(received(self.receiver), expected(self.sim))
                raise AssertionError(f"timed out after {self.cycles} cycles ({state}): {told}")
            await asyncio.sleep(0.05)
        return expected(self.sim)


@pytest.fixture
async def world(aiohttp_server: ServerFactory, tmp_path: Path) -> AsyncIterator[World]:
    clock = ManualClock()
    sim = Simulator(seed=17, clock=clock, api_key=API_KEY)
    receiver = WebhookReceiver(SECRET)
    world = World(clock, sim, receiver)
    app = create_app(sim)
    app.middlewares.append(world.count_cycles)
    api = str((await aiohttp_server(app)).make_url("")).rstrip("/")
    hook = str((await aiohttp_server(receiver.app())).make_url("/hook"))
    world.config = write_config(tmp_path, api, hook)
    pacing = asyncio.create_task(world.pace())
    try:
        yield world
    finally:
        pacing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pacing


@pytest.fixture
async def watchers(world: World, tmp_path: Path) -> AsyncIterator[Callable[[], Watcher]]:
    """Makes `benchwatch run` processes on the world's config; every one is killed and reaped at the end."""
    made: list[Watcher] = []

    def make() -> Watcher:
        made.append(Watcher(world.config, tmp_path / f"watcher-{len(made)}.log"))
        return made[-1]

    try:
        yield make
    finally:
        for watcher in made:
            await watcher.kill()


@pytest.mark.slow
async def test_run_watches_a_whole_lifecycle_and_stops_on_sigterm(
    world: World, watchers: Callable[[], Watcher]
) -> None:
    watcher = watchers()
    address = await watcher.start()
    add_jobs(world.sim)  # only now: the watcher is polling
    wanted = await world.until_all_told()
    async with aiohttp.ClientSession() as http, http.get(f"{address}/api/jobs") as jobs:
        assert {job["job_name"] for job in await jobs.json()} == {"e2e-complete", "e2e-setup-fails"}
    assert await watcher.terminate() == 0, watcher.log()[-2000:]
    log = watcher.log()
    assert wanted.total() >= 6 and ("finished", "e2e-setup-fails", "failed", "") in wanted
    assert all(delivery.verified for delivery in world.receiver.deliveries)
    assert len(world.receiver.deliveries) == len(unique(world.receiver))  # nothing twice
    assert log.rstrip().endswith("stopped") and API_KEY not in log


@pytest.mark.slow
async def test_kill_9_and_restart_lose_nothing_and_repeat_only_sends_in_flight(
    world: World, watchers: Callable[[], Watcher]
) -> None:
    first = watchers()
    await first.start()
    add_jobs(world.sim)
    try:
        await world.receiver.wait_for(2, timeout_s=60)
    except TimeoutError:
        raise AssertionError(f"{len(world.receiver.requests)} of 2 notifications arrived within 60s") from None
    await first.kill()
    assert first.process is not None and first.process.returncode == -signal.SIGKILL
    world.clock.advance(3 * STEP_MS)  # life goes on while the watcher is down
    second = watchers()
    await second.start()
    wanted = await world.until_all_told()
    assert await second.terminate() == 0, second.log()[-2000:]
    by_id = Counter(delivery.webhook_id for delivery in world.receiver.deliveries)
    assert sum(n - 1 for n in by_id.values()) <= CONCURRENCY  # repeats: at most the sends in flight at the kill
    assert received(world.receiver) == wanted  # and no fact was told twice under two ids


@pytest.mark.slow
async def test_two_replicas_on_postgres_share_the_jobs_and_a_kill_9_loses_nothing(
    world: World, tmp_path: Path, postgres_database: str
) -> None:
    url = f"postgresql://postgres@127.0.0.1:5432/{postgres_database}"
    replicas = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        config = folder / "benchwatch.yaml"
        text = world.config.read_text().replace("state: {path: ./state.db}", f"state: {{url: '{url}', lease_ttl: 2s}}")
        config.write_text(text)
        replicas.append(Watcher(config, tmp_path / f"replica-{name}.log"))
    try:
        for replica in replicas:
            await replica.start()
        add_jobs(world.sim)  # only now: both replicas poll, so neither slow start can miss a job's beginning
        first, second = replicas
        try:
            await world.receiver.wait_for(2, timeout_s=60)
        except TimeoutError:
            raise AssertionError(f"{len(world.receiver.requests)} of 2 notifications arrived within 60s") from None
        await first.kill()  # its jobs move to the other replica within the lease TTL (2 s) + one poll interval
        wanted = await world.until_all_told()
        assert await second.terminate() == 0, second.log()[-2000:]
        by_id = Counter(delivery.webhook_id for delivery in world.receiver.deliveries)
        # Repeats: only sends the killed replica had made and not yet recorded — in flight (the notifier's
        # concurrency) or being recorded (RECORD_WINDOW) — each taken over by the survivor, which recorded it as an
        # `interrupted` attempt naming the dead replica (a send whose record was in a batch of the killed replica's
        # group commit is one of these: under the load of the whole suite one was, besides four in flight).
        repeated = sorted(notification_id for notification_id, n in by_id.items() if n > 1)
        assert sum(n - 1 for n in by_id.values()) <= CONCURRENCY + RECORD_WINDOW
        async with PostgresStore(url) as store:
            for notification_id in repeated:
                outcomes = [attempt.outcome for attempt in await store.deliveries(notification_id)]
                assert DeliveryOutcome.INTERRUPTED in outcomes, (notification_id, outcomes)
        assert received(world.receiver) == wanted  # every fact told (the killed replica's jobs too), none twice
        assert "Traceback" not in second.log()
    finally:
        for replica in replicas:
            await replica.kill()

"""The service in process, on a manual clock: `Service` against the simulator and a webhook receiver on real local
ports, its steps (`poll_once`, `flush_timers`, `drain`) driven by the test while time moves only when told.

A full lifecycle yields the expected notifications; API faults change nothing that arrives; restarts lose nothing
and repeat nothing; group windows open at a restart close after it; a stop lets the current cycle and the sends in
flight finish, then closes the endpoint. Expected notifications come from the simulated jobs' own final outcomes,
so runs compare by content, not by timing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ServerFactory
from tests.fakes.base import Reply
from tests.fakes.webhook import WebhookReceiver
from tests.lifecycle import SECRET, add_jobs, all_finished, difference, expected, received, unique, write_config
from watcher.app.config import LoadedConfig, load_config
from watcher.app.service import Service
from watcher.core.clock import ManualClock
from watcher.simulator import Faults, RawJson, Simulator, create_app
from watcher.store.sqlite import SQLiteStore

INTERVAL_MS = 10_000
MAX_STEPS = 300  # the jobs end within ~100 intervals
WATCH = "poll_interval: 10s, max_requests_per_s: null"


class World:
    """The simulator on a manual clock, a webhook receiver, and the config that joins them."""

    def __init__(self, clock: ManualClock, sim: Simulator, receiver: WebhookReceiver, config: Path) -> None:
        self.clock, self.sim, self.receiver, self.config = clock, sim, receiver, config

    def loaded(self, rules: str = "") -> LoadedConfig:
        """The config, with `rules` instead of the failures rule when given."""
        text = self.config.read_text()
        if rules:
            text = text[: text.index("  - {name: failures")] + rules
            self.config.write_text(text)
        return load_config(self.config)

    def service(self, loaded: LoadedConfig) -> Service:
        """A service on the world's clock; its waits (the poll spread, retries) move the clock instead."""
        return Service(loaded, clock=self.clock, sleep=self.sleep)

    async def sleep(self, seconds: float) -> None:
        """The injected sleep: time passes at once."""
        self.clock.advance(round(seconds * 1000))

    async def step(self, service: Service) -> None:
        """One interval: a cycle, the due group windows, every due send; then the clock to the next cycle."""
        started_ms = self.clock.now_ms()
        await service.poll_once()
        await service.flush_timers()
        await service.drain()
        self.clock.set(max(self.clock.now_ms(), started_ms + INTERVAL_MS))

    def all_told(self) -> bool:
        """The jobs have ended and the receiver holds exactly what their outcomes call for."""
        return all_finished(self.sim) and received(self.receiver) == expected(self.sim)

    async def until_all_told(self, service: Service) -> None:
        """Step until all is told; past MAX_STEPS, fail saying what arrived and what was expected."""
        for _ in range(MAX_STEPS):
            await self.step(service)
            if self.all_told():
                return
        raise AssertionError(difference(received(self.receiver), expected(self.sim)))


@pytest.fixture
async def world(aiohttp_server: ServerFactory, tmp_path: Path) -> AsyncIterator[World]:
    clock = ManualClock()
    sim = Simulator(seed=17, clock=clock, api_key="e2e-key")
    add_jobs(sim)
    receiver = WebhookReceiver(SECRET)
    api = str((await aiohttp_server(create_app(sim))).make_url("")).rstrip("/")
    hook = str((await aiohttp_server(receiver.app())).make_url("/hook"))
    yield World(clock, sim, receiver, write_config(tmp_path, api, hook, watch=WATCH))


async def test_a_full_lifecycle_yields_the_expected_notifications(world: World) -> None:
    service = world.service(world.loaded())
    async with service.started():
        await world.until_all_told(service)
        status_port = service.status.port if service.status is not None else 0
        async with aiohttp.ClientSession() as http:
            ready = await http.get(f"http://127.0.0.1:{status_port}/readyz")
            assert ready.status == 200
            metrics = await (await http.get(f"http://127.0.0.1:{status_port}/metrics")).text()
            jobs = await (await http.get(f"http://127.0.0.1:{status_port}/api/jobs")).json()
    wanted = expected(world.sim)
    assert wanted.total() >= 6 and ("finished", "e2e-setup-fails", "failed", "") in wanted
    assert all(delivery.verified for delivery in world.receiver.deliveries)
    assert len(world.receiver.deliveries) == len(unique(world.receiver))  # nothing twice
    assert "benchwatch_events_total" in metrics and 'benchwatch_polls_total{outcome="ok"}' in metrics
    assert {job["job_name"] for job in jobs} == {"e2e-complete", "e2e-setup-fails"}


@pytest.mark.slow
async def test_api_faults_change_nothing_that_arrives(world: World) -> None:
    world.sim.set_faults(
        Faults(rate_429=0.08, rate_500=0.04, rate_503=0.04, rate_truncated=0.04, rate_malformed=0.04, retry_after_s=0.2)
    )
    service = world.service(world.loaded())
    async with service.started():
        await world.until_all_told(service)
    assert len(world.receiver.deliveries) == len(unique(world.receiver))


@pytest.mark.slow
async def test_restarts_lose_nothing_and_repeat_nothing(world: World) -> None:
    """Each process stops right after a cycle that put notifications in the outbox, before it sends them; the
    watcher is then down for three intervals while the jobs go on."""
    loaded = world.loaded()
    pending_at_stops: list[int] = []
    for _ in range(MAX_STEPS):
        service = world.service(loaded)
        async with service.started():
            pending = await _steps_until_some_pending(world, service)
        if not pending:
            break
        pending_at_stops.append(pending)
        world.clock.advance(3 * INTERVAL_MS)
    assert world.all_told(), difference(received(world.receiver), expected(world.sim))
    assert len(pending_at_stops) >= 3 and len(world.receiver.deliveries) == len(unique(world.receiver))


async def _steps_until_some_pending(world: World, service: Service) -> int:
    """Send what the last process left, then step until a cycle leaves notifications pending (returns how many,
    unsent) or all is told (returns 0)."""
    await service.drain()
    for _ in range(MAX_STEPS):
        started_ms = world.clock.now_ms()
        await service.poll_once()
        pending = (await service.store.outbox_counts()).get("pending", 0)
        if pending:
            return pending
        await service.flush_timers()
        await service.drain()
        if world.all_told():
            return 0
        world.clock.set(max(world.clock.now_ms(), started_ms + INTERVAL_MS))
    raise AssertionError(difference(received(world.receiver), expected(world.sim)))


async def test_a_group_window_open_at_a_restart_closes_after_it(world: World) -> None:
    loaded = world.loaded(
        "  - {name: grouped, on: [scenario.failed, scenario.timed_out], notify: hook, group_by: [job.name], "
        "group_wait: 5m}\n"
    )
    first = world.service(loaded)
    async with first.started():
        for _ in range(MAX_STEPS):
            await world.step(first)
            if first.tracker.next_due_ms() is not None:
                break
        due_ms = first.tracker.next_due_ms()
    assert due_ms is not None and due_ms > world.clock.now_ms()  # a window is open as the process stops
    second = world.service(loaded)
    async with second.started():
        await second.poll_once()
        assert second.tracker.next_due_ms() == due_ms  # the window came back from the store, due as before
        await world.until_all_told(second)
    grouped = [d.payload for d in unique(world.receiver) if d.payload["rule"] == "grouped"]
    assert any(len(payload["events"]) > 1 for payload in grouped)  # a window gathered several failures
    assert len(world.receiver.deliveries) == len(unique(world.receiver))


async def test_a_stop_lets_the_cycle_and_the_sends_in_flight_finish_then_closes_the_endpoint(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    loaded = world.loaded()
    async with world.service(loaded).started() as before:  # two known jobs, notifications in the outbox
        for _ in range(30):  # the jobs are running, not yet finished
            await before.poll_once()
            world.clock.advance(INTERVAL_MS)
    world.receiver.then(*[Reply(200, delay_s=0.2)] * 100)  # slow: sends are in flight when the stop comes
    stop = asyncio.Event()
    sleeps: list[float] = []

    async def stop_mid_cycle(seconds: float) -> None:  # the spread's wait between two polls of one cycle
        sleeps.append(seconds)
        stop.set()
        await world.sleep(seconds)

    service = Service(loaded, clock=world.clock, sleep=stop_mid_cycle, slot_jobs=1)  # a wait between its two jobs
    caplog.set_level(logging.INFO, logger="benchwatch")
    assert await asyncio.wait_for(service.run(stop), timeout=30) == 0
    lines = [record.getMessage() for record in caplog.records if record.name.startswith("benchwatch")]
    stopping = next(i for i, line in enumerate(lines) if line.startswith("stopping"))
    delivered = [i for i, line in enumerate(lines) if line.startswith("delivered")]
    assert sleeps and service.cycle.targets() and lines[-1] == "stopped"
    assert delivered and min(delivered) > stopping  # sends in flight at the stop finished after it
    async with SQLiteStore(world.config.parent / "state.db") as store:
        counts = await store.outbox_counts()
    # no send cut off: every request that reached the receiver is recorded sent; what the finishing cycle added
    # stays pending for the next start (a stop claims nothing new: issue 15), never dead
    assert counts.get("sent") == len(world.receiver.requests)
    assert set(counts) <= {"sent", "pending"}
    request_log = list(world.sim.request_log)
    last_cycle = request_log[_last_listing(request_log) :]
    assert all(any(plan.job_id in line for line in last_cycle) for plan in world.sim.jobs())  # the cycle ended
    with pytest.raises(aiohttp.ClientConnectionError):  # the endpoint is closed
        async with aiohttp.ClientSession() as http:
            await http.get(f"http://127.0.0.1:{_bound_port(lines)}/healthz")


def _last_listing(request_log: list[str]) -> int:
    return max(i for i, line in enumerate(request_log) if line.startswith("GET /v1/benchmark_jobs?"))


def _bound_port(lines: list[str]) -> int:
    line = next(line for line in lines if line.startswith("status endpoint on"))
    return int(line.split("http://", 1)[1].split(" ", 1)[0].rsplit(":", 1)[1])


async def test_a_score_of_1e400_is_unknown_and_delivery_goes_on(world: World) -> None:
    """`average_score: 1e400` overflows to infinity; stored, that was JSON `null` where a number must be, and
    reading the outbox back failed: every delivery stopped for good. Non-finite numbers are unknown (None)."""
    service = world.service(world.loaded())
    async with service.started():
        await world.step(service)  # the jobs known, still initializing
        world.clock.advance(3_600_000)  # both ended meanwhile; their outcomes come with an overflowing score
        for plan in world.sim.jobs():
            outcomes = world.sim.job_view(plan.job_id)["benchmark_outcomes"] or []
            hostile = [{**outcome, "average_score": RawJson(b"1e400")} for outcome in outcomes]
            world.sim.tamper(plan.job_id, {"benchmark_outcomes": hostile})
        await world.until_all_told(service)
        assert (await service.readiness())[0]
        pending = await service.store.outbox_counts()
    runs = [d.payload for d in unique(world.receiver) if d.payload["rule"] == "runs"]
    assert runs and all(event["average_score"] is None for payload in runs for event in payload["events"])
    # benchwatch's score comes from the scenario outcomes, not the API's average: known, and finite
    scores = [score for payload in runs for score in payload["summary"]["scores"].values()]
    assert scores and all(0.0 <= score <= 1.0 for score in scores)
    assert set(pending) == {"sent"}


async def test_a_stop_whose_grace_ends_mid_poll_says_so_in_one_line_without_a_traceback(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGTERM while a cycle waits on a slow poll: at the end of the grace APScheduler cancelled the cycle, and
    logged the CancelledError as the job's failure, with a traceback."""
    loaded = world.loaded()
    async with world.service(loaded).started() as before:
        await before.poll_once()  # the jobs known: the next start GETs each one
    slow = world.sim.jobs()[0]
    world.sim.slow(slow.job_id, 20)
    stop = asyncio.Event()
    service = Service(loaded, clock=world.clock, sleep=world.sleep, stop_grace_s=0.2)
    caplog.set_level(logging.INFO)
    running = asyncio.create_task(service.run(stop))
    deadline = asyncio.get_running_loop().time() + 10
    while not any(slow.job_id in line for line in world.sim.request_log):  # the slow GET has started
        assert asyncio.get_running_loop().time() < deadline, "the slow job was never polled"
        await asyncio.sleep(0.01)
    stop.set()
    assert await asyncio.wait_for(running, timeout=5) == 0
    await asyncio.sleep(0)  # the cancelled cycle ends
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]
    assert any("was cut off" in r.getMessage() for r in caplog.records)


async def test_a_cycle_stops_waiting_for_a_slow_poll_before_its_next_run_can_come(world: World) -> None:
    """A cycle waited a whole interval for its polls, so one held up by a slow job ended just after the next run was
    due, and APScheduler skipped that run: every job waited two intervals (one replica on `ha`'s many workload
    skipped two of seven cycles). It stops waiting at (0.9 - jitter) × the interval: before the next run can come."""
    # 2 s, not 1: the 0.1 × interval between the wait's end and the next run's earliest start is the test's margin
    # for the cycle's own work on a loaded machine (0.2 s here)
    world.config.write_text(world.config.read_text().replace(WATCH, "poll_interval: 2s, jitter: 0.3, spread: 0.5"))
    service = world.service(world.loaded())
    async with service.started():
        await service.poll_once()  # the jobs known: the next cycle GETs each one
        slow, fast = world.sim.jobs()
        world.sim.slow(slow.job_id, 20)
        before = len(world.sim.request_log)
        loop = asyncio.get_running_loop()
        started = loop.time()
        report = await service.poll_once()
        waited_s = loop.time() - started
        assert 1.2 <= waited_s < 1.4  # (0.9 - 0.3) × 2 s; the next run comes 1.4 s after this one at the earliest
        assert report.polled == 1 and service.cycle.polls_running() == 1  # the fast job; the slow one goes on
        assert any(fast.job_id in line for line in list(world.sim.request_log)[before:])

"""Catch-up: a job that moved on before the watcher first saw it is told in full, `late`, exactly once — after a
stop, between two discovery passes, on a replica — while a fresh store takes what it finds as the starting point.

The service runs in process on a manual clock against the simulator; what a webhook receiver gets is compared with
what the simulated jobs' own final outcomes call for (tests/lifecycle.py), by content.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import ServerFactory
from tests.fakes.webhook import WebhookReceiver
from tests.lifecycle import AGENTS, SECRET, add_jobs, all_finished, difference, expected, received, write_config
from tests.running_services import database_url
from watcher.app.config import load_config
from watcher.app.service import Service
from watcher.core.clock import ManualClock
from watcher.core.events import EVENT_ADAPTER, JobFinished, ScenarioFailed
from watcher.core.models import BenchmarkJobView
from watcher.core.snapshot import Snapshot
from watcher.diff.jobs import catch_up_diff, diff
from watcher.simulator import SimAgent, SimJobSpec, Simulator, create_app

INTERVAL_MS = 10_000
HOUR_MS = 3_600_000
WATCH = "poll_interval: 10s, max_requests_per_s: null"


class World:
    """The simulator on a manual clock and a webhook receiver; services started on a state of the test's choice."""

    def __init__(self, clock: ManualClock, sim: Simulator, receiver: WebhookReceiver, folder: Path) -> None:
        self.clock, self.sim, self.receiver, self.folder = clock, sim, receiver, folder
        self.api = self.hook = ""

    def service(self, state: str = "path: ./state.db", watch: str = WATCH) -> Service:
        """A service on the world's clock with the lifecycle rules, its state at `state`."""
        config = write_config(self.folder, self.api, self.hook, watch=watch)
        config.write_text(config.read_text().replace("state: {path: ./state.db}", f"state: {{{state}}}"))

        async def sleep(seconds: float) -> None:  # the poll spread and retries move the clock instead of waiting
            self.clock.advance(round(seconds * 1000))

        return Service(load_config(config, {}), clock=self.clock, sleep=sleep)

    async def step(self, service: Service) -> None:
        """One interval: a cycle, the due group windows, every due send; then the clock to the next cycle."""
        started_ms = self.clock.now_ms()
        await service.poll_once()
        await service.flush_timers()
        await service.drain()
        self.clock.set(max(self.clock.now_ms(), started_ms + INTERVAL_MS))

    async def steps(self, service: Service, count: int) -> None:
        for _ in range(count):
            await self.step(service)

    def late_flags(self) -> set[bool]:
        """`late` of every event the receiver got."""
        return {event["late"] for delivery in self.receiver.deliveries for event in delivery.payload["events"]}


@pytest.fixture
async def world(aiohttp_server: ServerFactory, tmp_path: Path) -> AsyncIterator[World]:
    clock = ManualClock()
    sim = Simulator(seed=23, clock=clock, api_key="e2e-key")
    world = World(clock, sim, WebhookReceiver(SECRET), tmp_path)
    world.api = str((await aiohttp_server(create_app(sim))).make_url("")).rstrip("/")
    world.hook = str((await aiohttp_server(world.receiver.app())).make_url("/hook"))
    yield world


async def test_jobs_that_ended_while_the_watcher_was_stopped_are_told_in_full_once(world: World) -> None:
    """Chaos row "watcher stopped while a job fails in setup and another completes with failures"."""
    first = world.service()
    async with first.started():
        await world.steps(first, 2)  # a fresh store: its watermark is set, nothing to tell
    add_jobs(world.sim)  # one job fails in setup, one completes with failed and timed-out scenarios
    world.clock.advance(3 * HOUR_MS)  # the watcher is down while both run and end
    assert all_finished(world.sim) and world.receiver.deliveries == []
    second = world.service()
    async with second.started():
        await world.steps(second, 4)
    wanted = expected(world.sim)
    assert ("finished", "e2e-setup-fails", "failed", "") in wanted
    assert any(key[0] == "failures" for key in wanted)
    assert received(world.receiver) == wanted, difference(received(world.receiver), wanted)
    assert world.late_flags() == {True}
    third = world.service()  # one more restart on the same store tells nothing again
    async with third.started():
        await world.steps(third, 3)
    assert received(world.receiver) == wanted


async def test_a_fresh_store_on_the_same_api_tells_none_of_the_old_jobs(world: World) -> None:
    add_jobs(world.sim)
    world.clock.advance(3 * HOUR_MS)
    service = world.service(state="path: ./fresh.db")
    async with service.started():
        await world.steps(service, 4)
    assert world.receiver.deliveries == []  # the first look of a fresh store is its starting point


async def test_a_job_that_fails_between_two_discovery_passes_is_told(world: World) -> None:
    service = world.service()
    async with service.started():
        await world.steps(service, 2)
        spec = SimJobSpec(name="e2e-quick-fail", n_scenarios=2, agents=AGENTS[:1], outcome="failed", init_s=1,
                          queue_s=1, end_after_s=2)  # fmt: skip
        world.sim.add_job(spec)
        world.clock.advance(INTERVAL_MS - 1)  # it fails within one interval: never seen running
        await world.steps(service, 2)
    (delivery,) = world.receiver.deliveries
    (event,) = delivery.payload["events"]
    assert (event["kind"], event["state"], event["late"]) == ("job.finished", "failed", True)
    assert event["failure_reason"] and event["from_state"] in ("queued", "running")
    assert delivery.payload["title"].endswith("(told late: it happened before benchwatch first saw the job)")


async def test_max_age_keeps_a_week_old_job_a_starting_point(world: World) -> None:
    first = world.service(watch=f"{WATCH}, catch_up: {{max_age: 2h}}")
    async with first.started():
        await world.step(first)
    old = world.sim.add_job(SimJobSpec(name="e2e-old", n_scenarios=2, agents=AGENTS[:1], fail_rate=1.0, init_s=1))
    world.clock.advance(3 * HOUR_MS)  # created 3 h before it is first seen: older than max_age
    recent = world.sim.add_job(SimJobSpec(name="e2e-recent", n_scenarios=2, agents=AGENTS[:1], fail_rate=1.0, init_s=1))
    world.clock.advance(HOUR_MS)  # both have ended
    second = world.service(watch=f"{WATCH}, catch_up: {{max_age: 2h}}")
    async with second.started():
        await world.steps(second, 3)
    told = {event["job_id"] for delivery in world.receiver.deliveries for event in delivery.payload["events"]}
    assert told == {recent.job_id} and old.job_id not in told


async def test_a_replica_on_postgres_catches_up_on_a_job_it_first_sees_ended(
    world: World, postgres_database: str
) -> None:
    """Chaos row "replica killed while a job ends", in one process: whichever replica first sees the ended job tells
    all of it, and the one after it (a restart) tells nothing twice."""
    state = f"url: '{database_url(postgres_database)}'"
    first = world.service(state=state)
    async with first.started():
        await world.step(first)
    add_jobs(world.sim)
    world.clock.advance(3 * HOUR_MS)
    for _ in range(2):  # the second start stands for the replica that took over: the store keeps each event once
        replica = world.service(state=state)
        async with replica.started():
            await world.steps(replica, 5)
    wanted = expected(world.sim)
    assert received(world.receiver) == wanted, difference(received(world.receiver), wanted)


# -- the diff -----------------------------------------------------------------------------------------------------


def _ended_job(sim: Simulator, clock: ManualClock) -> BenchmarkJobView:
    ids = [f"scn_{i}" for i in range(4)]
    agent = SimAgent(name="a", results={"scn_0": 1.0, "scn_1": "failed", "scn_2": "timeout", "scn_3": 0.5})
    plan = sim.add_job(SimJobSpec(name="ended", scenario_ids=ids, agents=[agent], init_s=1, queue_s=1))
    clock.advance(6 * HOUR_MS)
    return BenchmarkJobView.model_validate(sim.job_view(plan.job_id))


def test_catch_up_tells_what_a_live_watcher_would_have_told(sim: Simulator, clock: ManualClock) -> None:
    job = _ended_job(sim, clock)
    snapshot = Snapshot(job=job, at_ms=job.create_time_ms + 6 * HOUR_MS)
    result = catch_up_diff(snapshot)
    kinds = [event.kind for event in result.events]
    assert kinds == [
        "job.discovered", "run.started", "scenario.failed", "scenario.timed_out", "run.finished", "job.progress",
        "job.finished",
    ]  # fmt: skip
    assert all(event.late for event in result.events)
    finished = result.events[-1]
    assert isinstance(finished, JobFinished) and (finished.from_state, finished.state) == ("running", "completed")
    assert finished.outcomes[0].score == 0.375 and finished.outcomes[0].average_score == 0.75
    assert result.memory.finished and result.memory.unresolved  # the next poll diffs from here: nothing twice
    again = catch_up_diff(Snapshot(job=job, at_ms=snapshot.at_ms + 60_000))  # a restart, a replica, a minute on
    assert [event.id for event in again.events] == [event.id for event in result.events]
    assert diff(result.memory, Snapshot(job=job, at_ms=snapshot.at_ms + 1)).events == ()


def test_a_starting_point_stays_one_event_and_late_round_trips(sim: Simulator, clock: ManualClock) -> None:
    job = _ended_job(sim, clock)
    (discovered,) = diff(None, Snapshot(job=job, at_ms=job.create_time_ms + 1)).events
    assert discovered.kind == "job.discovered" and discovered.late is False
    failed = next(e for e in catch_up_diff(Snapshot(job=job, at_ms=1)).events if isinstance(e, ScenarioFailed))
    assert json.loads(failed.model_dump_json())["late"] is True
    assert EVENT_ADAPTER.validate_json(failed.model_dump_json()) == failed

"""A store that cannot write (a full disk, simulated on a real SQLite file with `PRAGMA max_page_count`): no new
sends and no new polls, one log line a minute, the record of what was sent kept and retried — never sent twice —
and everything resumes by itself once the store writes again."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from notifiers.protocol import NotifierContext
from notifiers.webhook import WebhookConfig, WebhookNotifier
from notifiers.worker import DeliveryPolicy, DeliveryWorker
from tests.conftest import FakeSleep, ThrowawayPostgres
from tests.fakes.webhook import WebhookReceiver
from watcher.api.client import RequestLimits, RetryPolicy, RunloopClient
from watcher.api.health import ApiHealth
from watcher.app.config import Config, LoadedConfig, WatchSection
from watcher.app.cycle import PollCycle
from watcher.app.service import Service
from watcher.core.clock import ManualClock
from watcher.core.events import Counters
from watcher.core.memory import JobMemory
from watcher.core.records import DeliveryAttempt, DeliveryOutcome, OutboxStatus
from watcher.core.storehealth import StoreHealth
from watcher.pipeline.sample import sample_notification
from watcher.pipeline.tracker import JobTracker
from watcher.simulator import SimJobSpec, Simulator
from watcher.store.errors import StoreWriteError
from watcher.store.postgres import PostgresStore
from watcher.store.sqlite import SQLiteStore
from watcher.web.status import create_status_app

UNLIMITED_PAGES = 1_000_000
SECRET = "whsec_" + "c2VjcmV0LWZvci1kZWxpdmVyeS10ZXN0cw=="


async def fill_up(store: SQLiteStore) -> None:
    """Cap the file at its size, then write filler rows (delivery attempts, job memories) until not even the
    smallest fits: the disk is full for every write a poll or a send makes."""
    await store.limit_pages(1)
    for write in (_filler_attempt, _filler_memory):
        for size in (2000, 300, 40, 0):
            for index in range(10_000):
                try:
                    await write(store, f"f{size}-{index}", "x" * size)
                except StoreWriteError:
                    break


async def _filler_attempt(store: SQLiteStore, key: str, text: str) -> None:
    filler = DeliveryAttempt(key, "x", 1, 0, 0, DeliveryOutcome.RETRY, None, text or None)
    await store.record_delivery(filler, status=OutboxStatus.PENDING, next_attempt_ms=0)


async def _filler_memory(store: SQLiteStore, key: str, text: str) -> None:
    memory = JobMemory(
        job_id=key, job_name=text, state="x", finished=False, counters=Counters(), runs={}, unresolved={},
        first_seen_ms=0, last_seen_ms=0, last_change_ms=0,
    )  # fmt: skip
    await store.commit(memory=memory)


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    async with SQLiteStore(tmp_path / "state.db") as opened:
        yield opened


def _cannot_write(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "cannot write" in r.getMessage()]


@pytest.mark.parametrize("record_window", [1, 3])
async def test_a_full_disk_holds_sends_keeps_the_record_and_never_sends_twice(
    aiohttp_server: Any,
    record_window: int,
    *,
    store: SQLiteStore,
    context: NotifierContext,
    clock: ManualClock,
    fake_sleep: FakeSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = WebhookReceiver(SECRET)
    server = await aiohttp_server(receiver.app())
    url = str(server.make_url("/hook"))
    config = WebhookConfig.model_validate({"type": "webhook", "url": url, "secret": SECRET})
    hook = WebhookNotifier("hook", config, context, clock=clock)
    base = sample_notification("hook", clock.now_ms())
    await store.commit(notifications=[base.model_copy(update={"id": f"nt_{i}"}) for i in range(5)])
    health = StoreHealth()
    policies = {"hook": DeliveryPolicy(concurrency=1)}
    worker = DeliveryWorker(
        store, {"hook": hook}, policies, clock=clock, sleep=fake_sleep, health=health, record_window=record_window
    )
    await fill_up(store)

    await worker.drain()
    # Sent, its record held: nothing else starts. A send's record is written once its slot is free, so the sends
    # made while it was being written (at most `record_window`, one in flight beside them) are held with it: every
    # send made is held, none is lost or made twice. One at a time (a window of 1), exactly one was made.
    made = len(receiver.requests)
    assert (made == 1 if record_window == 1 else 1 <= made <= record_window + 1) and worker.unrecorded == made
    for _ in range(5):
        clock.advance(5_000)
        assert await worker.drain() == 0
    assert len(receiver.requests) == made and not health.writable
    assert len(_cannot_write(caplog)) == 1  # once a minute, not per attempt
    assert "database or disk is full" in _cannot_write(caplog)[0]
    clock.advance(60_000)
    await worker.drain()
    assert len(_cannot_write(caplog)) == 2

    await store.limit_pages(UNLIMITED_PAGES)  # space again: it resumes by itself, the held record first
    await worker.drain()
    assert sorted(d.webhook_id or "" for d in receiver.deliveries) == [f"nt_{i}" for i in range(5)]
    assert health.writable and worker.unrecorded == 0
    assert [item.status for item in await store.outbox_items()] == ["sent"] * 5
    restarted = DeliveryWorker(store, {"hook": hook}, policies, clock=clock, sleep=fake_sleep)
    assert await restarted.drain() == 0 and len(receiver.requests) == 5  # a restart sends nothing again


async def test_a_full_disk_holds_polls_and_resumes_them(
    sim: Simulator,
    *,
    sim_url: str,
    store: SQLiteStore,
    clock: ManualClock,
    fake_sleep: FakeSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    plans = [sim.add_job(SimJobSpec(name=f"nightly-{i}")) for i in range(3)]
    health = StoreHealth()
    tracker = JobTracker(store)
    watch = WatchSection.model_validate({"jobs": [plan.job_id for plan in plans]})
    limits, retry = RequestLimits(max_per_s=None), RetryPolicy(max_attempts=1)
    async with RunloopClient(base_url=sim_url, sleep=fake_sleep, clock=clock, limits=limits, retry=retry) as client:
        cycle = PollCycle(
            watch=watch, client=client, tracker=tracker, clock=clock, health=ApiHealth(300_000),
            on_notifications=lambda: None, sleep=fake_sleep, store_health=health,
        )  # fmt: skip
        await fill_up(store)
        report = await cycle.run()
        assert report.failed == 3 and not health.writable and report.events == []
        requests = sim.requests_served
        for _ in range(5):
            clock.advance(5_000)
            await cycle.run()
        assert sim.requests_served == requests  # no polls while nothing can be recorded
        assert len(_cannot_write(caplog)) == 1
        assert not [r for r in caplog.records if r.exc_info]  # no tracebacks
        await store.limit_pages(UNLIMITED_PAGES)
        clock.advance(5_000)
        report = await cycle.run()
    discovered = sorted(e.job_name for e in report.events if e.kind == "job.discovered")
    assert health.writable and discovered == ["nightly-0", "nightly-1", "nightly-2"]
    # what changed since the first sighting (30 s of simulated time) is told too, not taken for the state found
    assert {e.kind for e in report.events} - {"job.discovered"} <= {"job.state_changed", "job.progress", "run.started"}
    assert any("writes again" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


async def test_the_service_is_not_ready_while_its_store_cannot_write(tmp_path: Path, aiohttp_client: Any) -> None:
    service = Service(LoadedConfig(Config(), tmp_path / "benchwatch.yaml"))
    client = await aiohttp_client(create_status_app(service))
    service.store_health.failed(service.clock.now_ms(), "state.db: cannot write: database or disk is full")
    response = await client.get("/readyz")
    assert response.status == 503 and "disk is full" in await response.text()


@pytest.mark.slow
async def test_a_cycle_probing_a_database_that_is_away_holds_its_polls_without_a_traceback(
    sim: Simulator,
    *,
    sim_url: str,
    throwaway_postgres: ThrowawayPostgres,
    clock: ManualClock,
    fake_sleep: FakeSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    plan = sim.add_job(SimJobSpec(name="nightly"))
    health = StoreHealth()
    limits, retry = RequestLimits(max_per_s=None), RetryPolicy(max_attempts=1)
    async with (
        PostgresStore(throwaway_postgres.url, connect_timeout_s=1) as store,
        RunloopClient(base_url=sim_url, sleep=fake_sleep, clock=clock, limits=limits, retry=retry) as client,
    ):
        cycle = PollCycle(
            watch=WatchSection.model_validate({"jobs": [plan.job_id]}), client=client, tracker=JobTracker(store),
            clock=clock, health=ApiHealth(300_000), on_notifications=lambda: None, sleep=fake_sleep,
            store_health=health,
        )  # fmt: skip
        throwaway_postgres.stop()
        health.failed(clock.now_ms(), "the delivery worker could not record")  # as the service's worker tells it
        report = await cycle.run()  # the probe write meets no server: the cycle holds, it does not raise
        assert report.polled == 0 and not health.writable
        assert not [r for r in caplog.records if r.exc_info]  # no tracebacks
        throwaway_postgres.start()
        clock.advance(5_000)
        report = await cycle.run()
    assert health.writable and [e.job_name for e in report.events] == ["nightly"]

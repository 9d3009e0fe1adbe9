"""Stopping the delivery worker (SIGTERM): nothing new is claimed, sends in flight finish within the grace and are
recorded, and the rest stay pending — none is sent twice, however slow the receiver."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from notifiers.protocol import NotifierContext
from notifiers.webhook import WebhookConfig, WebhookNotifier
from notifiers.worker import DeliveryPolicy, DeliveryWorker
from tests.fakes.webhook import WebhookReceiver
from watcher.core.clock import ManualClock
from watcher.pipeline.sample import sample_notification
from watcher.store.sqlite import SQLiteStore


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    async with SQLiteStore(tmp_path / "state.db") as opened:
        yield opened


async def _slow_setup(
    aiohttp_server: Any, store: SQLiteStore, context: NotifierContext, clock: ManualClock
) -> tuple[WebhookReceiver, DeliveryWorker]:
    receiver = WebhookReceiver()
    receiver.gate = asyncio.Event()  # every answer waits until the test opens it: a receiver as slow as needed
    server = await aiohttp_server(receiver.app())
    config = WebhookConfig.model_validate({"type": "webhook", "url": str(server.make_url("/hook")), "timeout": "1m"})
    hook = WebhookNotifier("hook", config, context, clock=clock)
    base = sample_notification("hook", clock.now_ms())
    await store.commit(notifications=[base.model_copy(update={"id": f"nt_{i}"}) for i in range(6)])
    worker = DeliveryWorker(store, {"hook": hook}, {"hook": DeliveryPolicy(concurrency=2)}, clock=clock)
    return receiver, worker


async def _statuses(store: SQLiteStore) -> list[str]:
    return sorted(item.status for item in await store.outbox_items())


async def test_stop_claims_nothing_new_and_records_the_sends_in_flight(
    aiohttp_server: Any, store: SQLiteStore, context: NotifierContext, clock: ManualClock
) -> None:
    receiver, worker = await _slow_setup(aiohttp_server, store, context, clock)
    running = asyncio.create_task(worker.run())
    await receiver.wait_for(2)  # two sends in flight (concurrency 2), four queued behind them
    stopping = asyncio.create_task(worker.stop(grace_s=30))
    assert receiver.gate is not None
    receiver.gate.set()  # the slow answers arrive during the shutdown
    await stopping
    await running
    assert len(receiver.requests) == 2  # the four queued were not started during the shutdown
    assert await _statuses(store) == ["pending"] * 4 + ["sent"] * 2
    restarted = DeliveryWorker(store, worker.notifiers, worker.policies, clock=clock)
    assert await restarted.drain() == 4
    assert sorted(r.json()["id"] for r in receiver.requests) == [f"nt_{i}" for i in range(6)]  # each once


async def test_stop_gives_up_on_a_receiver_that_never_answers_within_the_grace(
    aiohttp_server: Any, store: SQLiteStore, context: NotifierContext, clock: ManualClock
) -> None:
    receiver, worker = await _slow_setup(aiohttp_server, store, context, clock)
    running = asyncio.create_task(worker.run())
    await receiver.wait_for(2)
    started = time.monotonic()
    await worker.stop(grace_s=0.3)
    assert time.monotonic() - started < 0.3 + 1.0
    await running
    assert len(receiver.requests) == 2 and await _statuses(store) == ["pending"] * 6  # unfinished: sent again later
    # The two cut off may have arrived: each says so in its attempt log (it read attempts=0, as if never tried)
    cut = sorted(r.json()["id"] for r in receiver.requests)
    for notification_id in cut:
        item = await store.outbox_item(notification_id)
        attempts = await store.deliveries(notification_id)
        assert item is not None and item.attempts == 1 and [a.outcome for a in attempts] == ["interrupted"]
        assert attempts[0].reason == "stopped" and "may have arrived" in (attempts[0].error or "")
    assert receiver.gate is not None
    receiver.gate.set()

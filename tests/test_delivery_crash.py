"""A crash of the delivery worker mid-send, then a restart: nothing is lost, and a notification arrives twice only
if its send was in flight at the crash (counted at the receiver by webhook-id).

In process: the crash cancels the draining worker and every send in flight, so nothing after the receiver got a
request is recorded — what kill -9 leaves in the store, since each record is one SQLite transaction. A real
kill -9 of `benchwatch run` is in tests/test_service_e2e.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import aiohttp

from tests.conftest import ServerFactory
from tests.fakes.base import Reply
from tests.fakes.webhook import WebhookReceiver
from watcher.app.config import load_config
from watcher.app.delivery import build_worker
from watcher.core.clock import SystemClock
from watcher.pipeline.sample import sample_notification
from watcher.store.sqlite import SQLiteStore

SECRET = "whsec_Y3Jhc2gtdGVzdC1zZWNyZXQtZm9yLWJlbmNod2F0Y2g="
COUNT = 40
CONCURRENCY = 3


async def test_a_crash_mid_send_loses_nothing_and_repeats_only_what_was_in_flight(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    receiver = WebhookReceiver(SECRET)
    receiver.then(*[Reply(200, delay_s=0.02)] * (COUNT * 2))  # slow enough that sends are in flight at the crash
    server = await aiohttp_server(receiver.app())
    config = tmp_path / "benchwatch.yaml"
    config.write_text(
        "state: {path: ./state.db}\n"
        f"notifiers:\n  hook: {{type: webhook, url: '{server.make_url('/hook')}', secret: '{SECRET}', "
        f"concurrency: {CONCURRENCY}}}\n"
    )
    loaded = load_config(config)
    base = sample_notification("hook", 1_788_228_000_000)
    async with SQLiteStore(tmp_path / "state.db") as store:
        await store.commit(notifications=[base.model_copy(update={"id": f"nt_crash_{i:03d}"}) for i in range(COUNT)])

    async with SQLiteStore(tmp_path / "state.db") as store, aiohttp.ClientSession() as session:
        draining = asyncio.create_task(build_worker(loaded.config, store, session, SystemClock()).drain())
        await receiver.wait_for(COUNT // 3, timeout_s=30)
        draining.cancel()  # the crash: sends in flight are cut off before they are recorded
        await asyncio.gather(draining, return_exceptions=True)
    arrived_before_restart = len(receiver.requests)
    assert draining.cancelled() and arrived_before_restart < COUNT

    async with SQLiteStore(tmp_path / "state.db") as store, aiohttp.ClientSession() as session:
        await build_worker(loaded.config, store, session, SystemClock()).drain()

    ids = Counter(delivery.webhook_id for delivery in receiver.deliveries)
    assert set(ids) == {f"nt_crash_{i:03d}" for i in range(COUNT)}  # none lost
    twice = [notification_id for notification_id, n in ids.items() if n > 1]
    assert all(n <= 2 for n in ids.values())
    assert 0 < len(twice) <= CONCURRENCY  # only sends in flight at the crash went out again
    assert all(delivery.verified for delivery in receiver.deliveries)
    async with SQLiteStore(tmp_path / "state.db") as store:
        assert await store.outbox_counts() == {"sent": COUNT}

"""kill -9 the delivery worker mid-send, start it again: nothing is lost, and a notification arrives twice only
if its send was in flight at the kill (counted at the receiver by webhook-id)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tests.fakes.base import Reply
from tests.fakes.webhook import WebhookReceiver
from watcher.app.sample import sample_notification
from watcher.store.sqlite import SQLiteStore

SECRET = "whsec_Y3Jhc2gtdGVzdC1zZWNyZXQtZm9yLWJlbmNod2F0Y2g="
COUNT = 40
CONCURRENCY = 3


async def _flush(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "watcher", "deliveries", "flush", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


async def test_kill_9_mid_send_loses_nothing_and_repeats_only_what_was_in_flight(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    receiver = WebhookReceiver(SECRET)
    receiver.then(*[Reply(200, delay_s=0.05)] * (COUNT * 2))  # slow enough that sends are in flight at the kill
    server = await aiohttp_server(receiver.app())
    config = tmp_path / "benchwatch.yaml"
    config.write_text(
        "state: {path: ./state.db}\n"
        f"notifiers:\n  hook: {{type: webhook, url: '{server.make_url('/hook')}', secret: '{SECRET}', "
        f"concurrency: {CONCURRENCY}}}\n"
    )
    base = sample_notification("hook", 1_788_228_000_000)
    async with SQLiteStore(tmp_path / "state.db") as store:
        await store.commit(notifications=[base.model_copy(update={"id": f"nt_crash_{i:03d}"}) for i in range(COUNT)])

    first = await _flush(config)
    await receiver.wait_for(COUNT // 3, timeout_s=30)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    arrived_before_restart = len(receiver.requests)
    assert first.returncode == -signal.SIGKILL and arrived_before_restart < COUNT

    second = await _flush(config)
    _, err = await asyncio.wait_for(second.communicate(), timeout=60)
    assert second.returncode == 0, err.decode()

    ids = Counter(delivery.webhook_id for delivery in receiver.deliveries)
    assert set(ids) == {f"nt_crash_{i:03d}" for i in range(COUNT)}  # none lost
    twice = [notification_id for notification_id, n in ids.items() if n > 1]
    assert all(n <= 2 for n in ids.values())
    assert len(twice) <= CONCURRENCY  # only sends in flight at the kill went out again
    assert all(delivery.verified for delivery in receiver.deliveries)
    async with SQLiteStore(tmp_path / "state.db") as store:
        assert await store.outbox_counts() == {"sent": COUNT}

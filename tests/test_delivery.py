"""Durable delivery: the outbox and the worker — retries, Retry-After, max age, dead letters, 410, isolation,
rate limits, and the CLI over the outbox."""

from __future__ import annotations

import asyncio
import io
import logging
import random
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from notifiers.console import ConsoleConfig, ConsoleNotifier
from notifiers.protocol import NotifierContext, RetryableSendError
from notifiers.webhook import WebhookConfig, WebhookNotifier
from notifiers.worker import DUE_BATCH, DeliveryPolicy, DeliveryWorker, Outbox
from tests.conftest import Backend, FakeSleep
from tests.fakes.base import Reply
from tests.fakes.webhook import WebhookReceiver
from tests.waiting import until
from watcher.app.config import load_config
from watcher.app.service import Service
from watcher.cli.main import main
from watcher.core.clock import ManualClock, SystemClock
from watcher.core.failures import Reason
from watcher.core.notification import Notification
from watcher.core.records import OutboxItem
from watcher.pipeline.sample import sample_notification
from watcher.store.protocol import NamespacedState, Store
from watcher.store.sqlite import SQLiteStore

SECRET = "whsec_" + "c2VjcmV0LWZvci1kZWxpdmVyeS10ZXN0cw=="


async def _receiver(aiohttp_server: Any) -> tuple[WebhookReceiver, TestServer]:
    receiver = WebhookReceiver(SECRET)
    return receiver, await aiohttp_server(receiver.app())


def _hook(name: str, server: TestServer, context: NotifierContext, clock: ManualClock) -> WebhookNotifier:
    config = WebhookConfig.model_validate({"type": "webhook", "url": str(server.make_url("/hook")), "secret": SECRET})
    return WebhookNotifier(name, config, context, clock=clock)


def _notes(notifier: str, count: int, clock: ManualClock) -> list[Notification]:
    base = sample_notification(notifier, clock.now_ms())
    return [base.model_copy(update={"id": f"nt_{notifier}_{i:03d}", "title": f"#{i}"}) for i in range(count)]


@pytest.fixture
async def store(backend: Backend) -> Any:
    """The outbox on each backend in turn: the store half of these tests is part of the conformance suite."""
    async with backend.store() as opened:
        yield opened


def _worker(
    store: Outbox, notifiers: dict[str, Any], clock: ManualClock, sleep: FakeSleep, **policy: Any
) -> DeliveryWorker:
    policies = {name: DeliveryPolicy(**policy) for name in notifiers}
    return DeliveryWorker(store, notifiers, policies, clock=clock, sleep=sleep)


async def test_notifications_go_out_once_and_every_attempt_is_recorded(
    aiohttp_server: Any, store: Store, context: NotifierContext, clock: ManualClock, fake_sleep: FakeSleep
) -> None:
    receiver, server = await _receiver(aiohttp_server)
    await store.commit(notifications=_notes("hook", 3, clock))
    worker = _worker(store, {"hook": _hook("hook", server, context, clock)}, clock, fake_sleep)
    assert await worker.drain() == 3
    assert await worker.drain() == 0
    assert sorted(d.webhook_id for d in receiver.deliveries) == ["nt_hook_000", "nt_hook_001", "nt_hook_002"]
    assert all(d.verified for d in receiver.deliveries)
    assert [item.status for item in await store.outbox_items()] == ["sent"] * 3
    (attempt,) = await store.deliveries("nt_hook_000")
    assert (attempt.outcome, attempt.attempt, attempt.reason) == ("sent", 1, None)


async def test_backoff_is_full_jitter_under_a_doubling_cap_drawn_from_the_injected_rng(
    aiohttp_server: Any, tmp_path: Path, context: NotifierContext, clock: ManualClock
) -> None:
    receiver, server = await _receiver(aiohttp_server)
    receiver.then(*[Reply(503)] * 14)
    policy = DeliveryPolicy(initial_backoff_s=1, max_backoff_s=20)
    draws = random.Random(3)  # what the worker's generator, seeded alike, must draw: uniform(0, the attempt's cap)
    expected = [round(draws.uniform(0, min(20, 2 ** (attempt - 1))) * 1000) for attempt in range(1, 8)]
    for run in ("first", "again"):  # the same seed, the same delays
        async with SQLiteStore(tmp_path / f"{run}.db") as store:
            await store.commit(notifications=_notes("hook", 1, clock))
            notifiers = {"hook": _hook("hook", server, context, clock)}
            worker = DeliveryWorker(store, notifiers, {"hook": policy}, clock=clock, rng=random.Random(3))
            delays_ms = []
            for _ in expected:
                await worker.drain()
                (item,) = await store.outbox_items()
                delays_ms.append(item.next_attempt_ms - clock.now_ms())
                clock.set(item.next_attempt_ms)
        assert delays_ms == expected, run
    assert max(expected) > 4000  # the cap doubled past the first attempts' (with seed 3)


async def test_retryable_failures_wait_then_succeed_with_the_same_id(
    aiohttp_server: Any, store: Store, context: NotifierContext, clock: ManualClock, fake_sleep: FakeSleep
) -> None:
    receiver, server = await _receiver(aiohttp_server)
    receiver.then(Reply(503), Reply(429, headers={"Retry-After": "7"}))
    await store.commit(notifications=_notes("hook", 1, clock))
    worker = _worker(store, {"hook": _hook("hook", server, context, clock)}, clock, fake_sleep, initial_backoff_s=1)
    await worker.drain()
    (item,) = await store.outbox_items()
    assert (item.status, item.attempts, item.last_reason) == ("pending", 1, "server_error")
    assert 0 <= item.next_attempt_ms - clock.now_ms() <= 1000  # full jitter under a 1 s first backoff
    clock.set(item.next_attempt_ms)
    await worker.drain()
    (item,) = await store.outbox_items()
    assert (item.attempts, item.last_reason, item.next_attempt_ms - clock.now_ms()) == (2, "rate_limited", 7000)
    assert await worker.drain() == 0  # not due yet
    clock.advance(7000)
    await worker.drain()
    (item,) = await store.outbox_items()
    assert (item.status, item.attempts) == ("sent", 3)
    assert {d.webhook_id for d in receiver.deliveries} == {"nt_hook_000"} and len(receiver.deliveries) == 3
    attempts = await store.deliveries("nt_hook_000")
    assert [(a.outcome, a.http_status) for a in attempts] == [("retry", 503), ("retry", 429), ("sent", None)]


async def test_permanent_failures_and_old_age_dead_letter(
    aiohttp_server: Any, store: Store, context: NotifierContext, clock: ManualClock, fake_sleep: FakeSleep
) -> None:
    receiver, server = await _receiver(aiohttp_server)
    receiver.then(Reply(400), *[Reply(500)] * 50)
    await store.commit(notifications=_notes("hook", 2, clock))
    worker = _worker(store, {"hook": _hook("hook", server, context, clock)}, clock, fake_sleep, max_age_ms=3_600_000)
    for _ in range(50):
        await worker.drain()
        due = await store.next_attempt_ms()
        if due is None:
            break
        clock.set(due)
    first, second = await store.outbox_items()
    assert (first.status, first.attempts, first.last_reason) == ("dead", 1, "client_error")
    assert second.status == "dead" and "gave up after" in (second.last_error or "")
    assert clock.now_ms() - second.notification.created_ms <= 3_600_000


async def test_410_disables_the_notifier_and_others_carry_on(
    aiohttp_server: Any, store: Store, context: NotifierContext, clock: ManualClock, fake_sleep: FakeSleep
) -> None:
    gone, gone_server = await _receiver(aiohttp_server)
    gone.then(Reply(410))
    fine, fine_server = await _receiver(aiohttp_server)
    await store.commit(notifications=_notes("gone", 3, clock) + _notes("fine", 3, clock))
    notifiers = {"gone": _hook("gone", gone_server, context, clock), "fine": _hook("fine", fine_server, context, clock)}
    worker = _worker(store, notifiers, clock, fake_sleep, concurrency=1)
    await worker.drain()
    assert "gone" in worker.disabled and len(gone.requests) == 1
    statuses = {item.notification.id: item.status for item in await store.outbox_items()}
    assert [statuses[f"nt_gone_{i:03d}"] for i in range(3)] == ["dead"] * 3
    assert [statuses[f"nt_fine_{i:03d}"] for i in range(3)] == ["sent"] * 3
    assert len(fine.requests) == 3


async def test_a_slow_notifier_never_holds_back_another(
    aiohttp_server: Any, store: Store, context: NotifierContext, clock: ManualClock
) -> None:
    slow, slow_server = await _receiver(aiohttp_server)
    slow.then(*[Reply(200, delay_s=30)] * 2)
    fast, fast_server = await _receiver(aiohttp_server)
    await store.commit(notifications=_notes("slow", 2, clock) + _notes("fast", 4, clock))
    notifiers = {"slow": _hook("slow", slow_server, context, clock), "fast": _hook("fast", fast_server, context, clock)}
    worker = DeliveryWorker(store, notifiers, {"slow": DeliveryPolicy(concurrency=1)}, clock=clock)
    await worker.dispatch()
    await fast.wait_for(4)
    await slow.wait_for(1)
    assert len(slow.requests) == 1  # the second waits for the first: concurrency 1
    await worker.stop(grace_s=0.1)


@pytest.mark.slow
async def test_the_running_worker_reads_on_past_one_batch_of_due_notifications(
    aiohttp_server: Any, store: Store, context: NotifierContext, clock: ManualClock
) -> None:
    receiver, server = await _receiver(aiohttp_server)
    count = DUE_BATCH + 30
    await store.commit(notifications=_notes("hook", count, clock))
    worker = DeliveryWorker(store, {"hook": _hook("hook", server, context, clock)}, {}, clock=clock)
    running = asyncio.create_task(worker.run())
    await receiver.wait_for(count)  # without reading on, the rest would wait for the 60-s idle timeout
    await worker.stop()
    await running  # stop() ends run() by itself
    assert sorted(d.webhook_id for d in receiver.deliveries) == [f"nt_hook_{i:03d}" for i in range(count)]


async def test_a_worker_with_a_dispatchs_worth_of_sends_under_way_has_no_room_and_reads_on_once_one_ends(
    aiohttp_server: Any, context: NotifierContext, clock: ManualClock, tmp_path: Path
) -> None:
    # Claimed at commit and handed over without a bound, a first pass's thousands of notifications would wait
    # claimed, renewed at every heartbeat, and go to another replica as `interrupted` if this one died (issue 28).
    receiver, server = await _receiver(aiohttp_server)
    receiver.gate = asyncio.Event()  # every send waits until the test opens it
    async with SQLiteStore(tmp_path / "state.db") as store:
        worker = DeliveryWorker(store, {"hook": _hook("hook", server, context, clock)}, {}, clock=clock)
        running = asyncio.create_task(worker.run())
        await until(lambda: worker._waiting_until_ms is not None)  # its first look found nothing: it waits a minute
        await store.commit(notifications=_notes("hook", DUE_BATCH + 1, clock))
        items = await store.outbox_items(status="pending", limit=DUE_BATCH + 1)
        assert worker.has_room()
        worker.take(items[:DUE_BATCH])  # as a PostgreSQL replica's commits hand them over
        assert not worker.has_room()  # a dispatch's worth under way: the next commit's are left unclaimed
        receiver.gate.set()
        await receiver.wait_for(DUE_BATCH + 1, timeout_s=30)  # the one left read as soon as a send ended
        await worker.stop()
        await running
    assert sorted(d.webhook_id for d in receiver.deliveries) == sorted(item.notification.id for item in items)


async def test_the_running_worker_sends_a_rescheduled_notification_when_it_falls_due(
    aiohttp_server: Any, store: Store, context: NotifierContext, clock: ManualClock
) -> None:
    receiver, server = await _receiver(aiohttp_server)
    receiver.then(Reply(503, headers={"Retry-After": "0"}))
    await store.commit(notifications=_notes("hook", 1, clock))
    worker = DeliveryWorker(store, {"hook": _hook("hook", server, context, clock)}, {}, clock=clock)
    running = asyncio.create_task(worker.run())
    await receiver.wait_for(2)  # the retry is due at once: no waiting for the 60-s idle timeout
    await worker.stop()
    await running  # stop() ends run() by itself
    assert [a.outcome for a in await store.deliveries("nt_hook_000")] == ["retry", "sent"]


class _Counting:
    """The store, counting the worker's looks at the next due time (`looks`) and its reads of due notifications
    (`reads`: each a claim's transaction on PostgreSQL)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.looks = 0
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def next_attempt_ms(self, *, after_ms: int = -1) -> int | None:
        self.looks += 1
        return await self._store.next_attempt_ms(after_ms=after_ms)

    async def due_notifications(self, now_ms: int, **kwargs: Any) -> list[OutboxItem]:
        self.reads += 1
        return await self._store.due_notifications(now_ms, **kwargs)


async def test_the_running_worker_looks_at_the_next_due_time_once_not_at_every_wake_up(
    aiohttp_server: Any, store: Store, context: NotifierContext, clock: ManualClock
) -> None:
    """Woken for new notifications (due at once), the worker read the next due time again after each: a transaction
    per wake-up, a quarter of a replica's while jobs changed. It reads it again only when it may have moved: its own
    retry moves it, and that retry goes out when due, not at the idle look a minute later."""
    receiver, server = await _receiver(aiohttp_server)
    counting = _Counting(store)
    worker = DeliveryWorker(counting, {"hook": _hook("hook", server, context, clock)}, {}, clock=clock)
    running = asyncio.create_task(worker.run())
    notes = _notes("hook", 6, clock)
    for index, note in enumerate(notes[:5]):
        await store.commit(notifications=[note])
        worker.wake()
        await receiver.wait_for(index + 1)
    looks = counting.looks
    assert looks <= 2  # at the start, and perhaps once more before the first send: not once per wake-up
    receiver.then(Reply(503, headers={"Retry-After": "1"}))
    await store.commit(notifications=[notes[5]])
    worker.wake()
    deadline = asyncio.get_running_loop().time() + 10
    while counting.looks == looks:  # the retry recorded, the worker reads the next due time again: the retry's
        assert asyncio.get_running_loop().time() < deadline, "the worker never looked at the retry's due time"
        await asyncio.sleep(0.01)
    clock.advance(1000)  # the retry falls due: the worker's wait (1 s) ends and it is sent
    await asyncio.wait_for(receiver.wait_for(7), timeout=10)
    await worker.stop()
    await running
    assert [a.outcome for a in await store.deliveries(notes[5].id)] == ["retry", "sent"]


async def test_the_running_worker_outlives_a_store_that_fails_and_sends_once_it_answers(
    aiohttp_server: Any,
    backend: Backend,
    context: NotifierContext,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver, server = await _receiver(aiohttp_server)
    store = backend.store()
    worker = DeliveryWorker(store, {"hook": _hook("hook", server, context, clock)}, {}, clock=clock)
    running = asyncio.create_task(worker.run())  # the store is not open: every look fails
    async with asyncio.timeout(10):  # it fails, waits, and looks again (woken early here): it does not die
        for failures in (1, 2):
            while worker.health.failures < failures:  # noqa: ASYNC110 - a condition with a deadline
                await asyncio.sleep(0.01)
            assert not running.done()
            worker.wake()
    said = [r.getMessage() for r in caplog.records if r.name == "benchwatch.delivery"]
    assert len([line for line in said if "cannot write" in line]) == 1  # said once, not once per look
    assert not [line for line in said if "writes again" in line]  # nothing was written: no recovery claimed
    await store.open()
    try:
        await store.commit(notifications=_notes("hook", 1, clock))
        worker.wake()  # as a commit (or NOTIFY) does
        await receiver.wait_for(1)
        await worker.stop()
        await running
    finally:
        await store.close()


class BuggyNotifier:
    """A notifier with a bug for some notifications: `raises` maps a notification id to what its send raises."""

    def __init__(self, name: str, raises: dict[str, Exception]) -> None:
        self.name = name
        self.raises = raises
        self.calls: list[str] = []

    async def send(self, notification: Notification) -> None:
        self.calls.append(notification.id)
        raise self.raises[notification.id]


async def test_a_bug_in_one_delivery_dead_letters_it_alone_and_the_others_flow(
    *,
    aiohttp_server: Any,
    store: Store,
    context: NotifierContext,
    clock: ManualClock,
    fake_sleep: FakeSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver, server = await _receiver(aiohttp_server)
    bug, unwritable = _notes("buggy", 2, clock)
    buggy = BuggyNotifier(
        "buggy",
        {
            bug.id: KeyError("agent"),  # a notifier's bug: not a classified send error
            # A retryable failure whose record cannot be written: its error text does not encode (a lone
            # surrogate, as undecodable bytes give) — a bug in one record, not a store that cannot write.
            unwritable.id: RetryableSendError("HTTP 502: \udcff\udcfe", reason=Reason.SERVER_ERROR),
        },
    )
    worker = _worker(store, {"buggy": buggy, "hook": _hook("hook", server, context, clock)}, clock, fake_sleep)
    await store.commit(notifications=[bug, unwritable])
    await worker.drain()
    await store.commit(notifications=_notes("hook", 3, clock))  # sent after the bugs: nothing holds them back
    assert await worker.drain() == 3
    assert sorted(d.webhook_id for d in receiver.deliveries) == ["nt_hook_000", "nt_hook_001", "nt_hook_002"]
    assert worker.health.writable and worker.unrecorded == 0
    dead = {item.notification.id: item for item in await store.outbox_items(status="dead")}
    assert sorted(dead) == sorted([bug.id, unwritable.id])
    assert {item.last_reason for item in dead.values()} == {"internal_error"}
    assert dead[bug.id].last_error == "internal error sending it through notifier 'buggy': KeyError: 'agent'"
    assert "recording its retry attempt: UnicodeEncodeError" in (dead[unwritable.id].last_error or "")
    assert worker.stats[("buggy", "dead", "internal_error")] == 2  # the metrics' label
    clock.advance(3_600_000)
    assert await worker.drain() == 0 and buggy.calls == [bug.id, unwritable.id]  # dead letters: not tried again
    told = [r for r in caplog.records if r.name == "benchwatch.delivery" and r.exc_info is not None]
    assert [getattr(r, "notification_id", None) for r in told] == [bug.id, unwritable.id]  # once each, traceback
    retry_lines = [r for r in caplog.records if r.getMessage().startswith(f"delivery of {unwritable.id}")]
    assert retry_lines == []  # never said to be retried: it is a dead letter


@pytest.mark.slow
async def test_the_rate_limit_spaces_sends(
    aiohttp_server: Any, store: Store, context: NotifierContext, clock: ManualClock, fake_sleep: FakeSleep
) -> None:
    receiver, server = await _receiver(aiohttp_server)
    await store.commit(notifications=_notes("hook", 5, clock))
    worker = _worker(store, {"hook": _hook("hook", server, context, clock)}, clock, fake_sleep, rate_per_s=2.0)
    started = clock.now_ms()
    await worker.drain()
    assert len(receiver.requests) == 5
    assert clock.now_ms() - started == 2000  # five starts at 0, 0.5, 1, 1.5, 2 s


async def test_restart_keeps_the_notifier_state(backend: Backend, session: aiohttp.ClientSession) -> None:
    async with backend.store() as store:
        await NamespacedState(store, "notifier.team").put("k", "v1")
    async with backend.store() as store:
        assert await NamespacedState(store, "notifier.team").get("k") == "v1"
        assert await NamespacedState(store, "notifier.other").get("k") is None


class Cli:
    """`benchwatch ...` in process (the command's own `main`, in a thread with its own event loop, as the process
    would run it): exit code, stdout and stderr, without paying a second of start-up per call."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    async def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.capsys.readouterr()
        code = await asyncio.to_thread(main, list(args))
        out, err = self.capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)


async def test_deliveries_cli_lists_dead_letters_and_sends_them_again(
    aiohttp_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = Cli(capsys)
    receiver, server = await _receiver(aiohttp_server)
    receiver.then(Reply(400))
    config = tmp_path / "benchwatch.yaml"
    config.write_text(
        f"state: {{path: ./state.db}}\nnotifiers:\n  hook: {{type: webhook, url: '{server.make_url('/hook')}', "
        f"secret: '{SECRET}'}}\n"
    )
    clock = ManualClock()
    async with SQLiteStore(tmp_path / "state.db") as store:
        await store.commit(notifications=_notes("hook", 2, clock))
    flushed = await cli("deliveries", "flush", "--config", str(config))
    assert flushed.returncode == 1 and "1 sent" in flushed.stdout and "1 dead" in flushed.stdout
    listed = await cli("deliveries", "list", "--config", str(config))
    assert (
        listed.returncode == 0
        and "nt_hook_000  dead" in listed.stdout
        and "client_error: webhook POST" in listed.stdout
    )
    assert SECRET not in listed.stdout
    retried = await cli("deliveries", "retry", "nt_hook_000", "--send", "--config", str(config))
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "nt_hook_000  sent" in retried.stdout
    assert [d.webhook_id for d in receiver.deliveries].count("nt_hook_000") == 2
    missing = await cli("deliveries", "retry", "nt_nope", "--state", str(tmp_path / "state.db"))
    assert missing.returncode == 2 and "no notification 'nt_nope'" in missing.stderr
    sent = await cli("deliveries", "retry", "nt_hook_001", "--state", str(tmp_path / "state.db"))
    assert sent.returncode == 2 and "nt_hook_001 was sent already; --force sends it again" in sent.stderr
    forced = await cli("deliveries", "retry", "nt_hook_001", "--force", "--send", "--config", str(config))
    assert forced.returncode == 0 and [d.webhook_id for d in receiver.deliveries].count("nt_hook_001") == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as usage:  # argparse's own exit: 10**23 overflowed SQLite's integers before
        main(["deliveries", "list", "--limit", str(10**23), "--state", str(tmp_path / "state.db")])
    assert usage.value.code == 2 and "--limit: must be between 0 and 1000000000" in capsys.readouterr().err


async def test_a_prefix_is_text_not_a_pattern(store: Store, clock: ManualClock) -> None:
    """SQLite's LIKE read `%` and `_` in a prefix as wildcards: `nt_%%%%` found any notification."""
    await store.commit(notifications=_notes("hook", 1, clock))
    assert (await store.outbox_item("nt_hook")) is not None  # a real prefix
    for pattern in ("nt_%%%%", "nt_hook_%%", "n__hook_0", "%%%%%%"):
        assert await store.outbox_item(pattern) is None, pattern


async def test_test_notify_reports_success_and_the_exact_error(
    aiohttp_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = Cli(capsys)
    receiver, server = await _receiver(aiohttp_server)
    receiver.then(Reply(200), Reply(401))
    config = tmp_path / "benchwatch.yaml"
    config.write_text(f"notifiers:\n  hook: {{type: webhook, url: '{server.make_url('/hook')}', secret: '{SECRET}'}}\n")
    ok = await cli("test-notify", str(config), "hook")
    assert ok.returncode == 0 and ok.stdout.startswith("hook: sent in")
    assert receiver.deliveries[0].verified and receiver.deliveries[0].payload["rule"] == "test-notify"
    failed = await cli("test-notify", str(config), "hook")
    assert failed.returncode == 1 and "FAILED (permanent, auth)" in failed.stdout and "HTTP 401" in failed.stdout
    unknown = await cli("test-notify", str(config), "hok")
    assert unknown.returncode == 2 and "no notifier 'hok'" in unknown.stderr


async def test_delivery_log_lines_name_the_job(
    store: SQLiteStore, clock: ManualClock, fake_sleep: FakeSleep, caplog: pytest.LogCaptureFixture
) -> None:
    notes = _notes("screen", 2, clock)
    await store.commit(notifications=notes)
    screen = ConsoleNotifier("screen", ConsoleConfig(type="console"), None, stream=io.StringIO())  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="benchwatch.delivery"):
        assert await _worker(store, {"screen": screen}, clock, fake_sleep).drain() == 2
    delivered = [record for record in caplog.records if record.getMessage().startswith("delivered ")]
    assert notes[0].job_id and [getattr(record, "job_id", None) for record in delivered] == [notes[0].job_id] * 2
    assert {getattr(record, "notification_id", None) for record in delivered} == {note.id for note in notes}


async def test_a_retry_from_the_cli_leaves_a_running_watcher_within_a_second(
    aiohttp_server: Any, backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`benchwatch deliveries retry` writes the store from another connection; the running watcher, idle with
    nothing due for a minute, hears of it (SQLite: `PRAGMA data_version`; PostgreSQL: NOTIFY) and sends at once."""
    receiver, server = await _receiver(aiohttp_server)
    receiver.then(Reply(400))  # the first send is refused: a dead letter
    location = backend.location()
    state = f"url: '{location}'" if backend.kind == "postgres" else f"path: '{location}'"
    config = tmp_path / "benchwatch.yaml"
    config.write_text(
        f"watch: {{jobs: []}}\nstate: {{{state}}}\nhttp: {{port: 0}}\n"
        f"notifiers:\n  hook: {{type: webhook, url: '{server.make_url('/hook')}', secret: '{SECRET}'}}\n"
    )
    (note,) = _notes("hook", 1, ManualClock(SystemClock().now_ms()))
    async with backend.store() as store:
        await store.commit(notifications=[note])
    service = Service(load_config(config))
    stop = asyncio.Event()
    running = asyncio.create_task(service.run(stop))
    try:
        await receiver.wait_for(1)
        async with asyncio.timeout(10):  # recorded dead: the worker is idle, nothing due for its 60-s wait
            while (await service.store.outbox_counts()).get("dead") != 1:  # noqa: ASYNC110 - a condition with a deadline
                await asyncio.sleep(0.01)
        retried = await Cli(capsys)("deliveries", "retry", note.id, "--config", str(config))
        assert retried.returncode == 0, retried.stderr
        await receiver.wait_for(2, timeout_s=1.0)
    finally:
        stop.set()
        await running
    assert [d.webhook_id for d in receiver.deliveries] == [note.id, note.id]

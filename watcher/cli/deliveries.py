"""`benchwatch deliveries` and `benchwatch test-notify`: look into the outbox, resend, try a notifier."""

from __future__ import annotations

import argparse
import json
import time

import aiohttp

from notifiers.protocol import SendError
from watcher.app.config import load_config
from watcher.app.delivery import build_notifiers, build_worker
from watcher.cli.errors import UsageError
from watcher.cli.state import config_file, existing_state, state_location
from watcher.core.clock import SystemClock
from watcher.core.printable import printable
from watcher.core.records import DeliveryAttempt, DeliveryOutcome, OutboxItem, OutboxStatus
from watcher.pipeline.explain import attempt_json
from watcher.pipeline.sample import sample_notification
from watcher.store import open_store
from watcher.store.location import redact_url


def _when(ms: int | None) -> str:
    return "-" if ms is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + "Z"


def _line(item: OutboxItem) -> str:
    notification = item.notification
    error = f"  {item.last_reason}: {item.last_error}" if item.last_error else ""
    return printable(
        f"{notification.id}  {item.status:<7} {notification.notifier:<16} {notification.rule:<20} "
        f"attempts={item.attempts:<3} created={_when(notification.created_ms)}{error}"
    )


async def list_deliveries(args: argparse.Namespace) -> int:
    """`benchwatch deliveries list`: the outbox, newest last, with each entry's last error."""
    path = existing_state(args)
    status = None if args.status == "all" else args.status
    async with open_store(path) as store:
        items = await store.outbox_items(status=status, limit=args.limit)
        counts = await store.outbox_counts()
    for item in items:
        print(_line(item))
    summary = ", ".join(f"{counts.get(name, 0)} {name}" for name in ("pending", "sent", "dead"))
    print(f"({len(items)} shown; {summary})")
    return 0


async def show_delivery(args: argparse.Namespace) -> int:
    """`benchwatch deliveries show ID`: one notification and every attempt at sending it, oldest first."""
    path = existing_state(args)
    async with open_store(path) as store:
        item = await store.outbox_item(args.id)
        if item is None:
            raise UsageError(f"no notification {args.id!r} in {redact_url(str(path))} (or the prefix is ambiguous)")
        attempts = await store.deliveries(item.notification.id)
    if args.json:
        print(json.dumps(_item_json(item, attempts), indent=2))
        return 0
    print(_line(item))
    for attempt in attempts:
        print(_attempt_line(attempt))
    interrupted = sum(1 for attempt in attempts if attempt.outcome == DeliveryOutcome.INTERRUPTED)
    if interrupted:
        print(f"({interrupted} interrupted: the receiver may have had it {interrupted + 1} times, under this one id)")
    return 0


def _attempt_line(attempt: DeliveryAttempt) -> str:
    took_s = (attempt.finished_ms - attempt.started_ms) / 1000
    why = f"  {attempt.reason}: {attempt.error}" if attempt.error else (f"  {attempt.reason}" if attempt.reason else "")
    line = f"  #{attempt.attempt:<3} {_when(attempt.started_ms)}  {took_s:>7.1f}s  {attempt.outcome:<11}{why}"
    return printable(line.rstrip())


def _item_json(item: OutboxItem, attempts: list[DeliveryAttempt]) -> dict[str, object]:
    notification = item.notification
    return {
        "id": notification.id,
        "notifier": notification.notifier,
        "rule": notification.rule,
        "status": item.status.value,
        "attempts": item.attempts,
        "created_ms": notification.created_ms,
        "done_ms": item.done_ms,
        "last_reason": item.last_reason,
        "last_error": item.last_error,
        "log": [attempt_json(attempt) for attempt in attempts],  # as the status page and `deliveries log` give it
    }


async def retry_delivery(args: argparse.Namespace) -> int:
    """`benchwatch deliveries retry ID`: back to pending; with --send, send it now through its notifier."""
    path = state_location(args)
    clock = SystemClock()
    async with open_store(path) as store:
        item = await store.outbox_item(args.id)
        if item is None:
            raise UsageError(f"no notification {args.id!r} in {redact_url(str(path))} (or the prefix is ambiguous)")
        if item.status == OutboxStatus.SENT and not args.force:  # its receiver has it: again only when asked
            raise UsageError(f"{item.notification.id} was sent already; --force sends it again")
        await store.requeue(item.notification.id, clock.now_ms())
        print(f"{item.notification.id}: pending again (was {item.status})")
        if not args.send:
            return 0
        if args.config is None:
            raise UsageError("--send needs --config to know the notifier")
        config = load_config(args.config).config
        async with aiohttp.ClientSession() as session:
            worker = build_worker(config, store, session, clock)
            await worker.drain()
        after = await store.outbox_item(item.notification.id)
        print(_line(after) if after else "gone")
        return 0 if after is not None and after.status == "sent" else 1


async def flush_outbox(args: argparse.Namespace) -> int:
    """`benchwatch deliveries flush --config C`: send what is due now (retries scheduled later stay pending)."""
    loaded = load_config(args.config)
    clock = SystemClock()
    async with open_store(state_location(args, loaded)) as store, aiohttp.ClientSession() as session:
        worker = build_worker(loaded.config, store, session, clock)
        started = await worker.drain()
        counts = await store.outbox_counts()
    print(f"{started} sends; " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("pending", "sent", "dead")))
    return 0 if counts.get("dead", 0) == 0 else 1


async def test_notify(args: argparse.Namespace) -> int:
    """`benchwatch test-notify --config CONFIG NOTIFIER`: send a sample notification; report success or the exact
    error."""
    path = config_file(args)
    loaded = load_config(path)
    config = loaded.config
    if args.notifier not in config.notifiers:
        known = ", ".join(sorted(config.notifiers)) or "none"
        raise UsageError(f"no notifier {args.notifier!r} in {path} (known: {known})")
    clock = SystemClock()
    async with open_store(state_location(args, loaded)) as store, aiohttp.ClientSession() as session:
        notifier = build_notifiers(config, store, session, clock)[args.notifier]
        notification = sample_notification(args.notifier, clock.now_ms())
        started = time.monotonic()
        try:
            await notifier.send(notification)
        except SendError as exc:
            kind = "retryable" if exc.retryable else "permanent"
            print(f"{args.notifier}: FAILED ({kind}, {exc.reason}): {exc}")
            return 1
    elapsed_ms = (time.monotonic() - started) * 1000
    print(f"{args.notifier}: sent in {elapsed_ms:.0f} ms ({config.notifiers[args.notifier].destination()})")
    return 0

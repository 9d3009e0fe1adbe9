"""`delivery`: how many notifications per second the delivery worker sends on a first pass — a backlog of pending
notifications, each sent once through the webhook notifier to a receiver in its own process and its attempt
recorded — from SQLite and from PostgreSQL (issue 28: at least 1,000/s on PostgreSQL).

The worker is the service's (`build_worker` from a config with one webhook notifier, its default concurrency);
the backlog is committed first, then `drain()` sends it all. The receiver's count must equal the backlog (every
notification arrived, none twice). Per backend: notifications per second of wall time, CPU seconds of this
process per notification, and, on PostgreSQL, database transactions per notification (`pg_stat_database`, as
`ha` reads it). The baseline, in the same run: the same bodies POSTed straight to the same receiver by a bare
aiohttp loop, as many at once as the notifier's concurrency — what sending alone costs, nothing recorded. Rounds
alternate baseline, SQLite, PostgreSQL; medians are reported, each round's figures and the machine's load average
kept beside them (the rates are wall-time figures, which the load moves).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.hookrecv import ReceiverClient
from benchmarks.replicas import Database
from benchmarks.simproc import start_child
from notifiers.http import encode_json
from notifiers.webhook import request_body
from watcher.app.config import load_config
from watcher.app.delivery import build_worker
from watcher.core.clock import SystemClock
from watcher.core.notification import Notification
from watcher.pipeline.sample import sample_notification
from watcher.store import open_store

TARGET_PER_S = 1000.0
COMMIT_CHUNK = 500  # notifications per commit while filling the outbox
CONCURRENCY = 4  # the webhook notifier's default: the bare POSTs go as many at once


def backlog(count: int, now_ms: int) -> list[Notification]:
    """`count` distinct notifications to the notifier `hook`, all due now."""
    base = sample_notification("hook", now_ms)
    return [base.model_copy(update={"id": f"nt_bench_{i:06d}", "title": f"#{i}"}) for i in range(count)]


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[ReceiverClient]:
    """The webhook receiver in its own process."""
    child = await start_child(["-m", "benchmarks.hookrecv", "--port", "{port}"], ready_path="/ready")
    try:
        async with aiohttp.ClientSession() as session:
            yield ReceiverClient(session, child.url)
    finally:
        await child.stop()


async def first_pass(location: str, hook: ReceiverClient, count: int, db: Database | None) -> dict[str, Any]:
    """Fill the outbox with `count` notifications, then send them all; what it took."""
    with tempfile.TemporaryDirectory(prefix="benchwatch-delivery-") as folder:
        config_path = Path(folder) / "benchwatch.yaml"
        config_path.write_text(f"notifiers:\n  hook: {{type: webhook, url: '{hook.hook_url}'}}\n")
        config = load_config(config_path, {}).config
        clock = SystemClock()
        store = open_store(location)
        await store.open()
        try:
            notes = backlog(count, clock.now_ms())
            for first in range(0, count, COMMIT_CHUNK):
                await store.commit(notifications=notes[first : first + COMMIT_CHUNK])
            arrived_before = await hook.count()
            async with aiohttp.ClientSession() as session:
                worker = build_worker(config, store, session, clock)
                xacts_before = await db.transactions() if db is not None else 0
                load = os.getloadavg()
                cpu_start, wall_start = time.process_time(), time.perf_counter()
                sent = await worker.drain()
                wall_s, cpu_s = time.perf_counter() - wall_start, time.process_time() - cpu_start
            counts = await store.outbox_counts()
        finally:
            await store.close()
        # After the close: an idle backend reports its counts up to 10 s late, one that exits at once.
        xacts = (await db.transactions()) - xacts_before - 1 if db is not None else None
    arrived = await hook.count() - arrived_before
    if arrived != count or sent != count or counts.get("sent") != count:
        raise RuntimeError(f"{count} notifications: {sent} sent, {arrived} arrived, outbox {counts}")
    return _figures(count, load, wall_s, cpu_s, xacts)


async def bare_posts(hook: ReceiverClient, count: int) -> dict[str, Any]:
    """The baseline: the same bodies POSTed by a bare aiohttp loop, CONCURRENCY at a time; nothing read or
    recorded."""
    bodies = [encode_json(request_body(note, "json")) for note in backlog(count, SystemClock().now_ms())]
    arrived_before = await hook.count()
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:

        async def post_each(share: list[bytes]) -> None:
            for body in share:
                async with session.post(hook.hook_url, data=body, headers=headers) as response:
                    response.raise_for_status()

        load = os.getloadavg()
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(post_each(bodies[i::CONCURRENCY]) for i in range(CONCURRENCY)))
        wall_s, cpu_s = time.perf_counter() - wall_start, time.process_time() - cpu_start
    arrived = await hook.count() - arrived_before
    if arrived != count:
        raise RuntimeError(f"{count} bare POSTs: {arrived} arrived")
    return _figures(count, load, wall_s, cpu_s, None)


def _figures(
    count: int, load: tuple[float, float, float], wall_s: float, cpu_s: float, xacts: int | None
) -> dict[str, Any]:
    """One round's figures: rate, CPU and (PostgreSQL) transactions per notification, with the load it ran under."""
    return {
        "notifications": count,
        "load_average": [round(value, 2) for value in load],
        "wall_s": round(wall_s, 3),
        "cpu_s": round(cpu_s, 3),
        "per_s": count / wall_s,
        "cpu_ms_per_notification": cpu_s * 1000 / count,
        "transactions": xacts,
        "transactions_per_notification": None if xacts is None else xacts / count,
    }


KINDS = ("bare", "sqlite", "postgres")
LABELS = {"bare": "bare POST", "sqlite": "SQLite", "postgres": "PostgreSQL"}


def _median(rounds: list[dict[str, Any]], key: str) -> float | None:
    values = [row[key] for row in rounds if row[key] is not None]
    return statistics.median(values) if values else None


def summarize(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per kind, each rate as a ratio to the bare POSTs' of the same run, and the target's verdict."""
    figures: dict[str, Any] = {"rounds": rounds}
    bare_rate = _median(rounds["bare"], "per_s")
    for kind in KINDS:
        rate = _median(rounds[kind], "per_s")
        figures[kind] = {
            "per_s": rate,
            "vs_bare": rate / bare_rate if rate and bare_rate else None,
            "cpu_ms_per_notification": _median(rounds[kind], "cpu_ms_per_notification"),
            "transactions_per_notification": _median(rounds[kind], "transactions_per_notification"),
        }
    rate = figures["postgres"]["per_s"]
    figures["target"] = {"limit": TARGET_PER_S, "value": rate, "met": rate is not None and rate >= TARGET_PER_S}
    return figures


def print_figures(figures: dict[str, Any]) -> None:
    """Medians per kind, every round's rates and loads, and the target's verdict."""
    rounds = figures["rounds"]
    count = rounds["bare"][0]["notifications"]
    print(
        f"\ndelivery: a first pass over {count:,} notifications (webhook, concurrency {CONCURRENCY}), median of"
        f" {len(rounds['bare'])} rounds"
    )
    print(f"  {'':<12}{'per s':>8}{'× bare':>8}{'cpu ms each':>13}{'xacts each':>12}  rounds (per s @ load average)")
    for kind in KINDS:
        row = figures[kind]
        xacts = row["transactions_per_notification"]
        each = ", ".join(f"{r['per_s']:.0f} @ {r['load_average'][0]:.2f}" for r in rounds[kind])
        print(
            f"  {LABELS[kind]:<12}{row['per_s']:>8.0f}{row['vs_bare']:>8.2f}{row['cpu_ms_per_notification']:>13.3f}"
            f"{'—' if xacts is None else f'{xacts:.3f}':>12}  {each}"
        )
    target = figures["target"]
    verdict = "met" if target["met"] else "MISSED"
    print(f"  target: PostgreSQL ≥ {TARGET_PER_S:,.0f}/s: {target['value']:,.0f}/s — {verdict}")


async def run(*, quick: bool = False) -> dict[str, Any]:
    """`delivery`: rounds of the bare POSTs, SQLite and PostgreSQL (a database of its own each round, dropped)."""
    count, rounds = (100, 1) if quick else (3000, 3)
    measured: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    async with receiver() as hook:
        for index in range(rounds):
            measured["bare"].append(await bare_posts(hook, count))
            with tempfile.TemporaryDirectory(prefix="benchwatch-delivery-db-") as folder:
                measured["sqlite"].append(await first_pass(str(Path(folder) / "state.db"), hook, count, None))
            db = Database(f"benchwatch_delivery_{os.getpid()}_{index}")
            await db.create()
            try:
                measured["postgres"].append(await first_pass(db.url, hook, count, db))
            finally:
                await db.drop()
    figures = summarize(measured)
    print_figures(figures)
    return figures

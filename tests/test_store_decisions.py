"""Routing's decisions in the store, on both backends: committed with their event in one transaction, read back
in the order they were taken, and found by an event id's prefix; failed attempts keep their HTTP status; the
delivery log filters by job, rule, notifier and status; a store of the previous schema gains all this when it
opens (its notifications' jobs filled in)."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import psycopg
import pytest

from rules.engine import Router, RuleState
from tests.conftest import Backend
from tests.test_rules import MINUTE, T0, config, failed, job_finished
from tests.test_store import _timeline
from watcher.core.decisions import Verdict
from watcher.core.records import DeliveryAttempt, DeliveryOutcome, OutboxStatus
from watcher.diff.jobs import diff
from watcher.pipeline.tracker import JobTracker
from watcher.store import pgschema
from watcher.store.sqlite import MIGRATIONS

RULES = """
notifiers:
  a: {type: console}
rules:
  - {name: finished, on: job.finished, notify: a}
  - {name: burst, on: scenario.failed, notify: a, group_wait: 5m}
"""


class Interrupted(Exception):
    """Stands for the process dying before a commit's COMMIT."""


def _router(tmp_path: Path) -> Router:
    loaded = config(tmp_path, textwrap.dedent(RULES))
    return Router(loaded.rules, loaded.silences)


async def test_decisions_are_committed_with_their_event_and_read_back_in_order(
    backend: Backend, tmp_path: Path
) -> None:
    event = failed(1)
    async with backend.store() as store:
        tracker = JobTracker(store, router=_router(tmp_path))
        held = await tracker.record([event], None, T0)
        assert {d.verdict for d in held.decisions} == {Verdict.NOT_MATCHED, Verdict.HELD}
        await tracker.flush_due(T0 + 5 * MINUTE)

    async with backend.store() as store:  # reopened: what the commit wrote, not what the tracker kept
        decided = await store.decisions(event.id)
        assert [(d.rule, d.verdict) for d in decided] == [
            ("finished", Verdict.NOT_MATCHED),
            ("burst", Verdict.HELD),
            ("burst", Verdict.SENT),
        ]
        (sent_to,) = decided[-1].sent_to
        item = await store.outbox_item(sent_to[1])
        assert item is not None and item.notification.events[0].id == event.id
        found = await store.event(event.id[:8])
        assert found is not None and found.event == event
        assert await store.event("ev_") is None  # too short to be taken as a prefix
        assert await store.decisions("ev_unknown") == []


async def test_an_interrupted_commit_leaves_no_decisions(backend: Backend, tmp_path: Path) -> None:
    def hook(step: str) -> None:
        if step == "before_commit":
            raise Interrupted(step)

    event = job_finished(1, "failed")
    async with backend.store(step_hook=hook) as store:
        tracker = JobTracker(store, router=_router(tmp_path))
        with pytest.raises(Interrupted):
            await tracker.record([event], None, T0)
    async with backend.store() as store:
        assert await store.decisions(event.id) == [] and await store.event(event.id) is None


async def test_a_failed_attempt_keeps_its_http_status(backend: Backend, tmp_path: Path) -> None:
    async with backend.store() as store:
        tracker = JobTracker(store, router=_router(tmp_path))
        (notification,) = (await tracker.record([job_finished(1, "failed")], None, T0)).notifications
        await store.due_notifications(T0 + 1)  # claimed, as the worker does before it sends (replicas fence on it)
        attempt = DeliveryAttempt(
            notification.id, "a", 1, T0, T0 + 5, DeliveryOutcome.DEAD, "client_error", "POST x: HTTP 400", 400
        )
        await store.record_delivery(attempt, status=OutboxStatus.DEAD, next_attempt_ms=0)
        assert await store.deliveries(notification.id) == [attempt]


async def test_a_store_of_the_previous_schema_gains_decisions_and_keeps_its_deliveries(
    backend: Backend, tmp_path: Path
) -> None:
    migrations = MIGRATIONS if backend.kind == "sqlite" else pgschema.MIGRATIONS
    # the schema just before decisions came (later migrations may follow it)
    previous = migrations[: next(i for i, script in enumerate(migrations) if "CREATE TABLE decisions" in script)]
    (old,) = _router(tmp_path).route(RuleState(), [job_finished(1, "failed", job="bmj_old")], None, T0).notifications
    inserts = [
        "INSERT INTO deliveries (notification_id, notifier, attempt, started_ms, finished_ms, outcome)"
        f" VALUES ('{old.id}', 'a', 1, 1, 2, 'sent')",
        "INSERT INTO outbox (id, notifier, rule, created_ms, body, status)"
        f" VALUES ('{old.id}', 'a', 'finished', 1, '{old.model_dump_json()}', 'sent')",
    ]
    if backend.kind == "sqlite":
        with sqlite3.connect(backend.location()) as db:
            db.executescript(";".join(previous))
            db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            db.execute("INSERT INTO schema_version VALUES (?)", (len(previous),))
            for insert in inserts:
                db.execute(insert)
    else:
        with psycopg.connect(backend.location()) as conn:
            for script in previous:
                for statement in pgschema.statements(script):
                    conn.execute(statement.encode())
            conn.execute(b"CREATE TABLE schema_version (version INTEGER NOT NULL)")
            conn.execute(b"INSERT INTO schema_version VALUES (%d)" % len(previous))
            for insert in inserts:
                conn.execute(insert.encode())
    async with backend.store() as store:
        (logged,) = await store.delivery_log(job_id="bmj_old")  # the job filled in from the notification
        assert logged.item.notification == old
        assert [(a.outcome, a.http_status) for a in logged.attempts] == [(DeliveryOutcome.SENT, None)]
        result = diff(None, _timeline()[0])
        await store.commit(memory=result.memory, events=result.events)
        assert await store.decisions(result.events[0].id) == []


async def test_the_delivery_log_filters_and_brings_each_notifications_attempts(
    backend: Backend, tmp_path: Path
) -> None:
    async with backend.store() as store:
        tracker = JobTracker(store, router=_router(tmp_path))
        for n, job in enumerate(["bmj_a", "bmj_b", "bmj_c"]):
            await tracker.record([job_finished(n, "failed", job=job)], None, T0 + n)
        newest_first = [item.notification.id for item in await store.outbox_items(newest_first=True)]
        a, b, c = reversed(newest_first)
        await store.due_notifications(T0 + 5, exclude=(c,))  # claimed, as the worker does before it sends
        attempt = DeliveryAttempt(a, "a", 1, T0, T0 + 5, DeliveryOutcome.DEAD, "client_error", "HTTP 400", 400)
        await store.record_delivery(attempt, status=OutboxStatus.DEAD, next_attempt_ms=0)
        interrupted = DeliveryAttempt(b, "a", 1, T0, T0, DeliveryOutcome.INTERRUPTED, "claim_expired", "x", None)
        await store.record_delivery(interrupted, status=OutboxStatus.PENDING, next_attempt_ms=T0)

        every = await store.delivery_log()
        assert [d.item.notification.id for d in every] == newest_first
        assert [d.attempts for d in every] == [(), (interrupted,), (attempt,)]
        assert [d.item.notification.id for d in await store.delivery_log(status="dead")] == [a]
        assert [d.item.notification.id for d in await store.delivery_log(status="pending")] == [c, b]
        assert [d.item.notification.id for d in await store.delivery_log(status="interrupted")] == [b]
        assert [d.interrupted for d in await store.delivery_log(job_id="bmj_b")] == [1]
        assert len(await store.delivery_log(rule="finished", notifier="a", limit=2)) == 2
        assert await store.delivery_log(rule="burst") == []

"""Replicas on one PostgreSQL database, at the store: job leases shared fairly, fencing at commit, outbox claims
with SKIP LOCKED and a claim lease, the rule-timer claim, LISTEN/NOTIFY wake-ups."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestServer

from notifiers.protocol import NotifierContext
from notifiers.worker import DeliveryWorker
from rules.engine import Router
from rules.persist import VERSION, VERSION_KEY, load_rule_state, log_key
from tests.conftest import Backend, ThrowawayPostgres
from tests.running import write_config
from tests.test_delivery import Cli, _Counting, _hook, _notes, _receiver
from tests.test_pg_write_errors import reconnected, set_read_only
from tests.test_store import _timeline
from tests.waiting import until
from watcher.app.config import Config, load_config
from watcher.app.replicas import LeaseGate
from watcher.app.service import Service
from watcher.core.clock import ManualClock
from watcher.core.events import Event
from watcher.core.records import DeliveryAttempt, DeliveryOutcome, OutboxItem, OutboxLook, OutboxStatus, StateRow
from watcher.core.snapshot import Snapshot
from watcher.diff.jobs import diff
from watcher.pipeline import shared_rules
from watcher.pipeline.tracker import JobTracker
from watcher.simulator import Simulator, create_app
from watcher.store.errors import BatchRolledBackError, LeaseLostError, StoreError, StoreWriteError
from watcher.store.pgschema import LEASE_LOCK_KEY, OUTBOX_CHANNEL
from watcher.store.postgres import PostgresStore
from watcher.store.protocol import SectionReads, SectionView

TTL_MS = 5_000
JOBS = ["bmj_a", "bmj_b", "bmj_c", "bmj_d", "bmj_e"]


pytestmark = pytest.mark.slow  # replicas on PostgreSQL: databases made and dropped per test


@pytest.fixture
async def replicas(postgres_database: str, tmp_path: Path) -> AsyncIterator[list[PostgresStore]]:
    backend = Backend("postgres", tmp_path, postgres_database)
    stores = [
        PostgresStore(backend.location(), holder=name, lease_ttl_ms=TTL_MS, caller_clock=True)
        for name in ("r1", "r2", "r3")
    ]  # the test's clock times the leases and claims: it moves past a TTL at once
    for store in stores:
        await store.open()
    yield stores
    for store in stores:
        await store.close()


async def test_leases_are_shared_fairly_and_a_newcomer_gets_its_share(
    replicas: list[PostgresStore], clock: ManualClock
) -> None:
    r1, r2, _ = replicas
    assert (await r1.hold(JOBS, clock.now_ms())).held == frozenset(JOBS)  # alone: everything
    assert (await r2.hold(JOBS, clock.now_ms())).held == frozenset()  # all held: it waits for its share
    clock.advance(1000)
    kept = (await r1.hold(JOBS, clock.now_ms())).held  # two replicas now: r1 lets go of what exceeds 3
    taken = await r2.hold(JOBS, clock.now_ms())
    assert len(kept) == 3 and taken.held == taken.acquired == frozenset(JOBS) - kept
    assert await r1.lease_holders() == {job: ("r1" if job in kept else "r2") for job in JOBS}


async def test_jobs_coming_to_rest_move_no_lease_until_the_shares_are_a_tenth_apart(
    replicas: list[PostgresStore], clock: ManualClock
) -> None:
    """Each job that came to rest shrank the shares by a fraction, and every second or third one moved a lease to
    even them out again — a reload of the job's memory and a full poll at the replica that took it (2 to 10 per
    changed window on `ha`'s workloads). A replica now keeps up to a tenth above its share, unless another holds
    more than a tenth below it."""
    jobs = [f"bmj_{index:02d}" for index in range(90)]
    for store in replicas:
        await store.hold(jobs, clock.now_ms())  # r1 takes everything, the others wait
    clock.advance(1000)
    holdings = [await store.hold(jobs, clock.now_ms()) for store in replicas]  # three: a share of 30 each
    assert [len(holding.held) for holding in holdings] == [30, 30, 30]
    epochs, live = await _epochs(replicas[0]), list(jobs)

    async def rest(count: int) -> list[int]:
        """`count` more of r3's jobs come to rest; every replica heartbeats twice (a move takes two)."""
        finished = sorted(holdings[2].held)[:count]
        live[:] = [job for job in live if job not in finished]
        for beat in range(2):
            clock.advance(1000)
            for index, store in enumerate(replicas):
                rested = finished if index == 2 and beat == 0 else ()
                holdings[index] = await store.hold(live, clock.now_ms(), rested=rested)
        return [len(holding.held) for holding in holdings]

    # 87 live jobs, a share of 29 (slack 2): r1's and r2's 30 and r3's 27 are within it — nothing moves
    assert await rest(3) == [30, 30, 27]
    assert await _epochs(replicas[0]) == {job: epoch for job, epoch in epochs.items() if job in live}
    # 85 live jobs, a share of 29: r1's and r2's 30 are still within it, but r3's 25 is not — evened out
    assert await rest(2) == [29, 29, 27]


async def _epochs(store: PostgresStore) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(store.path) as conn:
        rows = await (await conn.execute("SELECT job_id, epoch FROM job_leases WHERE NOT resting")).fetchall()
        return {str(job_id): int(epoch) for job_id, epoch in rows}


async def test_a_dead_replicas_jobs_are_taken_over_after_the_ttl_and_its_commit_is_fenced(
    replicas: list[PostgresStore], clock: ManualClock
) -> None:
    r1, r2, _ = replicas
    snapshot = _timeline()[0]
    job_id = snapshot.job.id
    await r1.hold([job_id], clock.now_ms())
    result = diff(None, snapshot)
    await r1.commit(memory=result.memory, events=result.events)
    clock.advance(TTL_MS - 1)
    assert (await r2.hold([job_id], clock.now_ms())).held == frozenset()  # r1's lease still runs
    clock.advance(1)  # r1 stopped renewing (paused, partitioned, killed): its lease expires
    assert (await r2.hold([job_id], clock.now_ms())).acquired == {job_id}
    later = diff(result.memory, _timeline()[30])
    with pytest.raises(LeaseLostError, match="no longer holds the job's lease"):
        await r1.commit(memory=later.memory, events=later.events)  # the paused replica wakes up: refused
    assert await r1.load_memory(job_id) == result.memory and len(await r1.events()) == 1  # nothing of it written
    await r2.commit(memory=later.memory, events=later.events)
    assert await r2.load_memory(job_id) == later.memory and len(await r2.events()) == 1 + len(later.events)
    assert (await r1.hold([job_id], clock.now_ms())).held == frozenset()  # r2 holds it now


async def test_a_cycle_admitting_the_jobs_the_last_heartbeat_held_costs_no_transaction_of_its_own(
    replicas: list[PostgresStore], clock: ManualClock
) -> None:
    """Each cycle renewed the leases besides the heartbeats (three per TTL): half an idle replica's CPU. A cycle that
    wants the very jobs the last heartbeat held, within the heartbeat period, takes that heartbeat's answer; a new
    job, or the period over, renews."""
    r1 = replicas[0]
    gate = LeaseGate(r1, JobTracker(r1), clock, reuse_ms=TTL_MS // 3)

    async def seen_ms() -> int:  # what the last transaction of the heartbeat wrote (the caller's clock)
        async with await psycopg.AsyncConnection.connect(r1.path) as conn:
            row = await (await conn.execute("SELECT seen_ms FROM replicas WHERE holder = 'r1'")).fetchone()
            return int(row[0]) if row else -1

    assert await gate.admit(JOBS[:2]) == frozenset(JOBS[:2])
    held_at = clock.now_ms()
    clock.advance(TTL_MS // 3 - 1)
    assert await gate.admit(JOBS[:2]) == frozenset(JOBS[:2]) and await seen_ms() == held_at  # no transaction
    assert await gate.admit(JOBS[:2], new=[JOBS[2]]) == frozenset(JOBS[:3])  # a new job: renewed, taken
    assert await seen_ms() == clock.now_ms()
    clock.advance(TTL_MS // 3)
    assert await gate.admit(JOBS[:3]) == frozenset(JOBS[:3]) and await seen_ms() == clock.now_ms()  # period over


async def test_a_heartbeat_renews_one_row_however_many_leases_it_holds(postgres_database: str, tmp_path: Path) -> None:
    """Each lease row carried its own expiry, so every heartbeat rewrote every lease held: 2.4 million row versions
    in an 18-minute `ha` run, and with vacuum off (as on the CI machines' server) a table of 3,726 pages for 10,000
    rows, whose counts took the heartbeat 0.8–1.2 s. A lease now lives as long as its holder's row in `replicas`:
    after the heartbeat that takes 100 leases, 19 more update that row alone."""
    url = Backend("postgres", tmp_path, postgres_database).location()
    store = PostgresStore(url, holder="r1", lease_ttl_ms=TTL_MS, caller_clock=True)
    await store.open()
    jobs = [f"bmj_{index:03d}" for index in range(100)]
    for beat in range(20):
        assert (await store.hold(jobs, beat * 1000)).held == frozenset(jobs)  # renewed: held all along
    await store.close(release=False)  # its sessions end, reporting their counts (its leases kept: no update)
    query = (
        "SELECT (SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'job_leases'),"
        " (SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'replicas')"
    )
    deadline = asyncio.get_running_loop().time() + 15
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            leases, replicas = (await (await conn.execute(query)).fetchone()) or (0, 0)
            if (leases >= len(jobs) and replicas >= 19) or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
            await conn.execute("SELECT pg_stat_clear_snapshot()")
    assert (leases, replicas) == (len(jobs), 19)  # the take (one update a lease), then one row a heartbeat


async def test_a_job_that_came_to_rest_is_never_leased_again_nor_counted_in_a_share(
    replicas: list[PostgresStore], clock: ManualClock
) -> None:
    r1, r2, r3 = replicas
    held = [await r.hold(JOBS, clock.now_ms()) for r in replicas]  # r1 holds everything, the others wait
    assert held[0].held == frozenset(JOBS) and held[1].held == held[2].held == frozenset()
    finished = ["bmj_a", "bmj_b"]
    clock.advance(1000)
    rest = await r1.hold([job for job in JOBS if job not in finished], clock.now_ms(), rested=finished)
    assert rest.held == {"bmj_c"} and rest.resting == frozenset()  # 3 live jobs, 3 replicas: one each
    # r2 and r3 last saw every job running (a stale memory): they ask for all five, learn which rest, and
    # share the three live ones with r1 — a resting job is neither taken nor part of a share.
    for _ in range(3):
        clock.advance(1000)
        holdings = [await r.hold(JOBS, clock.now_ms()) for r in (r2, r3, r1)]
    assert holdings[0].resting == holdings[1].resting == frozenset(finished)
    assert sorted(job for holding in holdings for job in holding.held) == ["bmj_c", "bmj_d", "bmj_e"]
    assert [len(holding.held) for holding in holdings] == [1, 1, 1]  # ceil(3 live / 3 replicas) each
    assert set(await r1.lease_holders()) == {"bmj_c", "bmj_d", "bmj_e"}
    clock.advance(TTL_MS)  # everyone but r2 dies: r2 takes the live jobs, not the resting ones
    assert (await r2.hold(JOBS, clock.now_ms())).held == frozenset({"bmj_c", "bmj_d", "bmj_e"})


async def test_a_replica_stopping_in_order_hands_over_at_once(
    replicas: list[PostgresStore], clock: ManualClock
) -> None:
    r1, r2, _ = replicas
    assert (await r1.hold(JOBS, clock.now_ms())).timers
    await r1.close()
    holding = await r2.hold(JOBS, clock.now_ms())
    assert holding.held == frozenset(JOBS) and holding.timers  # no TTL to wait for


async def test_a_notification_is_claimed_by_one_replica_and_a_dead_claim_is_taken_over(
    replicas: list[PostgresStore], clock: ManualClock
) -> None:
    r1, _, r3 = replicas
    await r1.commit(notifications=_notes("hook", 6, clock))
    got = await asyncio.gather(*(r.due_notifications(clock.now_ms(), limit=3) for r in replicas))
    ids = [item.notification.id for items in got for item in items]
    assert sorted(ids) == [f"nt_hook_{i:03d}" for i in range(6)]  # every one claimed, none twice
    assert len(ids) == 6
    sender = r1 if got[0] else replicas[1]  # r3 claimed at most 3: r1 and r2 the rest
    sent = (got[0] or got[1])[0]
    await sender.record_delivery(
        DeliveryAttempt(
            sent.notification.id, "hook", 1, clock.now_ms(), clock.now_ms(), DeliveryOutcome.SENT, None, None
        ),
        status=OutboxStatus.SENT,
        next_attempt_ms=0,
    )
    own = [item.notification.id for item in got[2]]  # r3's sends in flight: its worker excludes them
    assert await r3.due_notifications(clock.now_ms(), exclude=own) == []  # the others' claims are live
    assert await r3.next_attempt_ms(after_ms=clock.now_ms()) == clock.now_ms() + TTL_MS  # when they expire
    clock.advance(TTL_MS)  # r1 and r2 died with their sends in flight
    taken = [item.notification.id for item in await r3.due_notifications(clock.now_ms(), exclude=own)]
    assert sorted(taken) == sorted(set(ids) - {sent.notification.id} - set(own))
    assert await r1.outbox_claims() == 0 and await r3.outbox_claims() == 5


async def test_taking_over_a_dead_replicas_claim_records_an_interrupted_attempt_naming_it(
    replicas: list[PostgresStore], clock: ManualClock
) -> None:
    r1, r2, _ = replicas
    await r1.commit(notifications=_notes("hook", 3, clock))
    dead, mine, never = "nt_hook_000", "nt_hook_001", "nt_hook_002"
    assert [item.attempts for item in await r1.due_notifications(clock.now_ms(), limit=1)] == [0]  # r1 claims 000
    assert [item.notification.id for item in await r2.due_notifications(clock.now_ms(), limit=1)] == [mine]
    claimed_ms = clock.now_ms()
    clock.advance(TTL_MS // 2)
    await r2.hold([], clock.now_ms())  # r2's heartbeat renews its claim; r1 (killed) renews nothing
    clock.advance(TTL_MS // 2)
    (taken,) = await r2.due_notifications(clock.now_ms(), limit=1, exclude=[mine])  # r1's claim expired: first due
    assert taken.notification.id == dead and taken.attempts == 1  # the interrupted try counts
    (interrupted,) = await r2.deliveries(dead)
    assert interrupted == DeliveryAttempt(
        dead, "hook", 1, claimed_ms, clock.now_ms(), DeliveryOutcome.INTERRUPTED, "claim_expired",
        "claim of replica r1 expired; its send may have arrived",
    )  # fmt: skip
    assert (taken.last_reason, taken.last_error) == (interrupted.reason, interrupted.error)
    clock.advance(TTL_MS)  # r2's own claims expire too (it stalled): taking them back is no takeover
    assert {item.notification.id for item in await r2.due_notifications(clock.now_ms())} == {dead, mine, never}
    assert [len(await r2.deliveries(i)) for i in (dead, mine, never)] == [1, 0, 0]
    sent = DeliveryAttempt(dead, "hook", 2, clock.now_ms(), clock.now_ms(), DeliveryOutcome.SENT, None, None)
    await r2.record_delivery(sent, status=OutboxStatus.SENT, next_attempt_ms=0)  # the worker numbers it attempts + 1
    assert [(a.attempt, a.outcome) for a in await r1.deliveries(dead)] == [(1, "interrupted"), (2, "sent")]


async def test_a_replica_that_lost_its_claim_mid_send_records_nothing_over_the_takeover(
    replicas: list[PostgresStore], clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """r1 pauses with a send in flight; r2 takes the claim over (an `interrupted` attempt naming r1) and sends. r1
    wakes, its send times out: its `retry` was written over r2's `sent`, and the notification went out again."""
    r1, r2, _ = replicas
    await r1.commit(notifications=_notes("hook", 1, clock))
    (claimed,) = await r1.due_notifications(clock.now_ms())
    clock.advance(TTL_MS)
    (taken,) = await r2.due_notifications(clock.now_ms())
    sent = DeliveryAttempt(taken.notification.id, "hook", 2, clock.now_ms(), clock.now_ms(), DeliveryOutcome.SENT,
                           None, None)  # fmt: skip
    await r2.record_delivery(sent, status=OutboxStatus.SENT, next_attempt_ms=0)
    late = DeliveryAttempt(claimed.notification.id, "hook", 1, 0, clock.now_ms(), DeliveryOutcome.RETRY, "timeout",
                           "timed out")  # fmt: skip
    await r1.record_delivery(late, status=OutboxStatus.PENDING, next_attempt_ms=clock.now_ms())
    item = await r1.outbox_item(claimed.notification.id)
    assert item is not None and (item.status, item.attempts) == ("sent", 2)  # nothing due again: sent once more, never
    assert [(a.attempt, a.outcome) for a in await r1.deliveries(claimed.notification.id)] == [
        (1, "interrupted"), (2, "sent")
    ]  # fmt: skip
    assert await r1.due_notifications(clock.now_ms()) == []
    assert any("claim was taken over while its send was in flight" in r.getMessage() for r in caplog.records)


async def test_leases_and_claims_follow_the_databases_clock_not_a_skewed_replicas(
    postgres_database: str, tmp_path: Path, clock: ManualClock
) -> None:
    """A replica whose clock runs 90 s ahead saw the others' leases and claims expire early and took them: 24–54 %
    of the notifications went out twice. On the database's clock (the default) it sees them live."""
    url = Backend("postgres", tmp_path, postgres_database).location()
    honest, skewed = PostgresStore(url, holder="honest"), PostgresStore(url, holder="skewed")
    await honest.open()
    await skewed.open()
    try:
        now_ms, ahead_ms = clock.now_ms(), clock.now_ms() + 90_000
        first = await honest.hold(JOBS, now_ms)
        assert first.held == frozenset(JOBS) and first.timers
        second = await skewed.hold(JOBS, ahead_ms)
        assert second.held == frozenset() and not second.timers  # they are held: it waits for its share
        await honest.commit(notifications=_notes("hook", 2, clock))
        claimed = await honest.due_notifications(now_ms)
        assert len(claimed) == 2 and await skewed.due_notifications(ahead_ms) == []  # claims live: nothing twice
    finally:
        await honest.close()
        await skewed.close()


async def test_deliveries_show_tells_an_interrupted_attempt_in_text_and_json(
    replicas: list[PostgresStore], clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    r1, r2, _ = replicas
    await r1.commit(notifications=_notes("hook", 1, clock))
    await r1.due_notifications(clock.now_ms())
    clock.advance(TTL_MS)
    (taken,) = await r2.due_notifications(clock.now_ms())
    sent = DeliveryAttempt(
        taken.notification.id, "hook", 2, clock.now_ms(), clock.now_ms() + 300, DeliveryOutcome.SENT, None, None
    )
    await r2.record_delivery(sent, status=OutboxStatus.SENT, next_attempt_ms=0)
    cli, url = Cli(capsys), r1._url

    shown = await cli("deliveries", "show", "nt_hook", "--state", url)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("nt_hook_000  sent    hook") and "attempts=2" in lines[0]
    assert lines[1].endswith("5.0s  interrupted  claim_expired: claim of replica r1 expired; its send may have arrived")
    assert lines[2].endswith("0.3s  sent") and lines[2].lstrip().startswith("#2")
    assert lines[3] == "(1 interrupted: the receiver may have had it 2 times, under this one id)"
    as_json = json.loads((await cli("deliveries", "show", "nt_hook_000", "--state", url, "--json")).stdout)
    assert [(a["attempt"], a["outcome"], a["reason"]) for a in as_json["log"]] == [
        (1, "interrupted", "claim_expired"), (2, "sent", None)
    ]  # fmt: skip
    assert as_json["log"][0]["error"] == "claim of replica r1 expired; its send may have arrived"
    missing = await cli("deliveries", "show", "nt_nope", "--state", url)
    assert (
        missing.returncode == 2 and "no notification 'nt_nope'" in missing.stderr and "Traceback" not in missing.stderr
    )


async def test_rule_timers_are_flushed_by_one_replica(replicas: list[PostgresStore], clock: ManualClock) -> None:
    """The claim goes with each heartbeat: the first replica's, renewed by its next; a dead holder's is taken by
    the next heartbeat after its TTL."""
    r1, r2, r3 = replicas
    assert [(await r.hold(JOBS, clock.now_ms())).timers for r in replicas] == [True, False, False]
    clock.advance(TTL_MS - 1)
    assert (await r1.hold(JOBS, clock.now_ms())).timers  # renewed
    clock.advance(TTL_MS)
    assert [(await r.hold(JOBS, clock.now_ms())).timers for r in (r2, r3, r1)] == [True, False, False]


class _Wakes:
    """A listener's wakes: their times, and an event set at each (for waiting on one with a deadline)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.event = asyncio.Event()

    def __call__(self) -> None:
        self.times.append(time.monotonic())
        self.event.set()

    async def next(self) -> None:
        """Wait (10 s at most) for a wake after the last `next`."""
        async with asyncio.timeout(10):
            await self.event.wait()
        self.event.clear()


async def _listening(store: PostgresStore) -> tuple[asyncio.Task[None], _Wakes]:
    """`store.listen` running and connected (it wakes once on connecting), and its wakes from then on."""
    wakes = _Wakes()
    listener = asyncio.create_task(store.listen(wakes))
    await wakes.next()
    wakes.times.clear()
    return listener, wakes


async def test_a_command_committing_notifications_wakes_every_replicas_worker_at_once(
    replicas: list[PostgresStore], clock: ManualClock
) -> None:
    command, r2, _ = replicas  # `command` does not listen: no worker of its own sends what it commits
    listener, wakes = await _listening(r2)
    try:
        started = time.monotonic()
        await command.commit(notifications=_notes("hook", 1, clock))
        await wakes.next()
        assert wakes.times[0] - started < 1.0
    finally:
        listener.cancel()


async def test_a_replica_committing_what_its_own_worker_sends_wakes_no_other_replica(
    replicas: list[PostgresStore], clock: ManualClock
) -> None:
    # Waking every worker at every commit cost each replica two transactions a commit: three replicas spent 2.2
    # times the transactions of one on the same work (issue 28).
    # Then a NOTIFY naming its sender, let pass by every listener, still woke each of them at every commit.
    r1, r2, command = replicas
    r1_listener, r1_wakes = await _listening(r1)  # r1 has a worker: it sends what it commits, and says nothing
    r2_listener, r2_wakes = await _listening(r2)
    try:
        await r1.commit(notifications=_notes("hook", 1, clock))
        await command.commit(notifications=_notes("other", 1, clock))  # NOTIFYs reach a listener in commit order
        await r2_wakes.next()  # the command's NOTIFY: had r1 sent one, it would have come before it
        assert len(r2_wakes.times) == 1 and r2.notifies_let_pass == 0  # the command's woke it; none came of r1's
        await r1_wakes.next()
        assert len(r1_wakes.times) == 1 and r1.notifies_let_pass == 0  # the command's; its own worker knew at once
        async with await psycopg.AsyncConnection.connect(r1._url, autocommit=True) as conn:  # an earlier version's
            await conn.execute("SELECT pg_notify(%s, 'r9')", (OUTBOX_CHANNEL,))
        await command.commit(notifications=_notes("other", 1, clock))
        await r2_wakes.next()
        assert len(r2_wakes.times) == 2 and r2.notifies_let_pass == 1  # let pass; the command's woke it
    finally:
        r1_listener.cancel()
        r2_listener.cancel()
    await r1.hold(JOBS, clock.now_ms())
    r2_listener, r2_wakes = await _listening(r2)
    try:
        await r1.close()  # stopping in order: its claims are free at once, and the others look now
        await r2_wakes.next()
    finally:
        r2_listener.cancel()


class _Taken:
    """A worker as a store hands it what it commits (`listen`'s `taker`), which starts nothing: the ids of each
    hand-over; `room` says whether it has room for more."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.room = True

    def has_room(self) -> bool:
        return self.room

    def take(self, items: Sequence[OutboxItem]) -> None:
        self.batches.append([item.notification.id for item in items])


async def test_a_listening_replicas_commit_claims_its_notifications_and_hands_them_over_once_committed(
    replicas: list[PostgresStore], clock: ManualClock
) -> None:
    # A worker woken at each commit claimed what the commit added: a transaction per commit, which three replicas
    # (smaller batches each) paid more often than one (issue 28). The commit claims them instead.
    r1, r2, _ = replicas
    taken, wakes = _Taken(), _Wakes()
    listener = asyncio.create_task(r1.listen(wakes, taken))
    await wakes.next()
    try:
        assert r1.hands_over_commits and not r2.hands_over_commits
        notes = _notes("hook", 4, clock)
        await r1.commit(notifications=notes[:2])
        assert taken.batches == [["nt_hook_000", "nt_hook_001"]]  # as the commit returns: no wake, no read
        assert await r2.due_notifications(clock.now_ms()) == [] and await r1.outbox_claims() == 2  # r1's
        with pytest.raises(RuntimeError):
            async with r1.rules_section():
                await r1.commit(notifications=notes[2:3])
                raise RuntimeError("the section fails: nothing of it committed")
        async with r1.rules_section():
            await r1.commit(notifications=notes[1:3])  # nt_hook_001 is there already: neither claimed nor handed
            assert len(taken.batches) == 1  # at the section's COMMIT, not before
        assert taken.batches[1:] == [["nt_hook_002"]]
        taken.room = False  # r1's worker has no room: left unclaimed, for the next dispatch of any worker
        await r1.commit(notifications=_notes("full", 1, clock))
        assert len(taken.batches) == 2 and await r1.outbox_claims() == 3
        await r2.commit(notifications=notes[3:])  # r2 does not listen: left for any worker to claim
        assert len(taken.batches) == 2
        due = sorted(item.notification.id for item in await r2.due_notifications(clock.now_ms()))
        assert due == ["nt_full_000", "nt_hook_003"]
        clock.advance(TTL_MS)  # r1 died before sending: its claims expire, r2 takes them over as interrupted
        ids = sorted(
            item.notification.id
            for item in await r2.due_notifications(clock.now_ms(), exclude=["nt_hook_003", "nt_full_000"])
        )
        assert ids == ["nt_hook_000", "nt_hook_001", "nt_hook_002"]
        assert [a.outcome for a in await r2.deliveries("nt_hook_000")] == [DeliveryOutcome.INTERRUPTED]
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    assert not r1.hands_over_commits
    await r1.commit(notifications=_notes("later", 1, clock))  # no longer listening: left to be claimed
    assert len(taken.batches) == 2 and await r1.outbox_claims() == 0


async def test_a_replicas_worker_sends_what_its_commits_hand_over_without_reading_the_outbox(
    replicas: list[PostgresStore], clock: ManualClock, aiohttp_server: Any, context: NotifierContext
) -> None:
    r1 = replicas[0]
    receiver, server = await _receiver(aiohttp_server)
    counting = _Counting(r1)
    worker = DeliveryWorker(counting, {"hook": _hook("hook", server, context, clock)}, {}, clock=clock)
    running = asyncio.create_task(worker.run())
    wakes = _Wakes()
    listener = asyncio.create_task(r1.listen(wakes, worker))
    try:
        await wakes.next()
        await until(lambda: counting.reads >= 1)  # the worker's first look, as it starts
        reads = counting.reads
        for index, note in enumerate(_notes("hook", 5, clock)):
            await r1.commit(notifications=[note])
            await asyncio.wait_for(receiver.wait_for(index + 1), timeout=10)
        assert counting.reads == reads  # five sent, the outbox not read once
        await until(lambda: worker.stats[("hook", DeliveryOutcome.SENT, "ok")] == 5)  # each recorded
        assert await r1.outbox_claims() == 0  # each claim let go with its record
        assert {item.status for item in await r1.outbox_items()} == {OutboxStatus.SENT}
    finally:
        listener.cancel()
        await worker.stop()
        await running


async def test_the_heartbeat_looks_at_the_outbox_for_the_worker_and_finds_what_a_dead_replica_left(
    replicas: list[PostgresStore], clock: ManualClock, aiohttp_server: Any, context: NotifierContext
) -> None:
    # The worker's own look every lease TTL — a claim and a read of the next due time — was a transaction a second
    # of every replica at rest with a 2-s TTL (issue 28). Each heartbeat looks for it, in its round trip.
    r1, r2, _ = replicas
    receiver, server = await _receiver(aiohttp_server)
    counting = _Counting(r2)
    hooks = {name: _hook(name, server, context, clock) for name in ("hook", "own")}
    worker = DeliveryWorker(counting, hooks, {}, clock=clock)
    running = asyncio.create_task(worker.run())
    dead_wakes, dead_taken, own_wakes, own_taken = _Wakes(), _Taken(), _Wakes(), _Taken()
    dead = asyncio.create_task(r1.listen(dead_wakes, dead_taken))  # r1's worker, handed two: it dies unsent
    own = asyncio.create_task(r2.listen(own_wakes, own_taken))  # r2's, handed one it leaves for a look
    try:
        await until(lambda: counting.reads >= 1)  # its first look, as it starts: nothing yet
        await dead_wakes.next()
        await own_wakes.next()
        reads = counting.reads
        await r1.commit(notifications=_notes("hook", 2, clock))
        await r2.commit(notifications=_notes("own", 1, clock))
        dead.cancel()
        look = (await r2.hold(JOBS, clock.now_ms())).outbox
        assert look == OutboxLook(None, frozenset({"nt_own_000"}))  # r1's live claims are r1's business
        worker.looked(look)  # its own claim, not started: a look now
        await until(lambda: worker.stats[("own", DeliveryOutcome.SENT, "ok")] == 1)  # sent and recorded
        assert counting.reads == reads + 1
        look = (await r2.hold(JOBS, clock.now_ms())).outbox
        assert look == OutboxLook(None, frozenset())
        worker.looked(look)
        assert not worker._wake.is_set()  # nothing due, nothing claimed: it is not woken for a look
        assert counting.reads == reads + 1  # nothing due: no look of its own
        clock.advance(TTL_MS)  # r1 is dead: its claims expire
        look = (await r2.hold(JOBS, clock.now_ms())).outbox
        assert look is not None and look.next_due_ms is not None and look.next_due_ms <= clock.now_ms()
        worker.looked(look)
        await until(lambda: worker.stats[("hook", DeliveryOutcome.SENT, "ok")] == 2)
        assert counting.reads == reads + 2  # the one claim the heartbeat's look called for
        for note in _notes("hook", 2, clock):
            outcomes = [a.outcome for a in await r2.deliveries(note.id)]
            assert outcomes == [DeliveryOutcome.INTERRUPTED, DeliveryOutcome.SENT]
    finally:
        dead.cancel()
        own.cancel()
        await worker.stop()
        await running
    assert own_taken.batches == [["nt_own_000"]] and dead_taken.batches == [["nt_hook_000", "nt_hook_001"]]
    assert sorted(d.webhook_id for d in receiver.deliveries) == ["nt_hook_000", "nt_hook_001", "nt_own_000"]


async def test_two_replicas_routing_into_one_group_at_once_keep_both_events(
    replicas: list[PostgresStore], clock: ManualClock, tmp_path: Path
) -> None:
    config = _digest(tmp_path, "job.discovered", "1m")
    r1, r2, _ = replicas
    firsts = {snapshot.job.id: snapshot for snapshot in reversed(_timeline())}  # each job's first snapshot
    (job_a, snap_a), (job_b, snap_b) = sorted(firsts.items())
    await r1.hold([job_a, job_b], clock.now_ms())
    await r2.hold([job_a, job_b], clock.now_ms())
    await r1.hold([job_a, job_b], clock.now_ms())  # two replicas: r1 lets one job go, r2 takes it
    await r2.hold([job_a, job_b], clock.now_ms())
    trackers = {
        store.holder: JobTracker(store, router=Router(config.rules, config.silences), shared_rules=True)
        for store in (r1, r2)
    }
    holder = await r1.lease_holders()
    await asyncio.gather(
        trackers[holder[job_a]].observe(snap_a), trackers[holder[job_b]].observe(snap_b)
    )  # both read, route into the one group window and commit at the same moment
    clock.set(max(snap_a.at_ms, snap_b.at_ms) + 60_000)
    flushed = await trackers["r1"].flush_due(clock.now_ms())
    (digest,) = flushed.notifications
    assert sorted(event.job_id for event in digest.events) == [job_a, job_b]


async def test_a_replica_paused_inside_the_rule_state_lock_loses_it_after_one_ttl(
    postgres_database: str, tmp_path: Path
) -> None:
    url = Backend("postgres", tmp_path, postgres_database).location()
    paused, other = PostgresStore(url, lease_ttl_ms=1000), PostgresStore(url, lease_ttl_ms=1000)
    await paused.open()
    await other.open()
    try:
        section = paused.rules_section()
        await section.__aenter__()  # ... and the process stops here (SIGSTOP, a long GC pause)
        started = time.monotonic()
        async with asyncio.timeout(10), other.rules_section():
            waited_s = time.monotonic() - started
        assert 0.5 < waited_s < 5  # the server ended the paused session after ~1 s
        with pytest.raises(StoreError):  # the paused replica, woken, learns its section is gone
            await section.__aexit__(None, None, None)
    finally:
        await paused.close()
        await other.close()


async def test_the_first_poll_of_a_job_taken_over_is_written_even_if_nothing_changed(
    replicas: list[PostgresStore], clock: ManualClock
) -> None:
    r1, r2, _ = replicas
    snapshot = _timeline()[0]
    job_id = snapshot.job.id
    await r1.hold([job_id], clock.now_ms())
    await JobTracker(r1).observe(snapshot)
    clock.advance(TTL_MS)  # r1 died; r2 takes the job over and polls it: the same bytes, a later time
    holding = await r2.hold([job_id], clock.now_ms())
    tracker = JobTracker(r2)
    await tracker.load_memories()
    for job in holding.acquired:
        tracker.forget(job)
    again = dataclasses.replace(snapshot, at_ms=clock.now_ms())
    assert (await tracker.observe(again)).events == ()
    memory = await r2.load_memory(job_id)
    assert memory is not None and memory.last_seen_ms == clock.now_ms()  # the new holder's poll is on record
    later = dataclasses.replace(again, at_ms=clock.now_ms() + 1000)
    await tracker.observe(later)  # from then on, an unchanged poll writes nothing, as before
    assert (await r2.load_memory(job_id)) == memory


async def test_replicas_read_the_rule_state_once_then_follow_each_others_changes_from_the_log(
    replicas: list[PostgresStore], clock: ManualClock, tmp_path: Path
) -> None:
    r1, r2, _ = replicas
    timeline, of_a, of_b = _two_jobs()
    reads: Counter[str] = Counter()
    for store in (r1, r2):
        load = store.load_state_rows

        async def counted(namespace: str, load: Any = load, holder: str = store.holder) -> list[StateRow]:
            reads[holder] += namespace == "rules.group"
            return list(await load(namespace))

        store.load_state_rows = counted  # type: ignore[method-assign]  # counts the reads, the store answers
    t1, t2 = _sharing(tmp_path, r1, r2)
    told = [*(await t1.observe(of_a[0])).events, *(await t1.observe(of_a[10])).events]
    assert reads["r1"] == 1  # its own commit moved the version on: its copy stays good
    told += (await t2.observe(of_b[0])).events
    told += (await t1.observe(of_a[30])).events  # r2 changed the group meanwhile: r1 reads what r2 logged
    assert reads == {"r1": 1, "r2": 1}
    await _digest_holds(t2, clock, timeline, told)  # nothing lost


async def test_a_turn_that_waited_behind_another_of_its_process_catches_up_from_where_that_one_left_it(
    replicas: list[PostgresStore], clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A turn asked for the log after the version its process had cached when the turn was asked for; another turn of
    # the same process moved that version on before this one got the lock. Taking the entries it already had for a
    # gap in the log made every such turn read the whole rule state again: three replicas on the first pass over
    # 10,000 jobs did so at nearly every poll. (Since `7ba59c3` a turn asks once the one before it has ended.)
    monkeypatch.setattr(shared_rules, "BATCH_TURNS", 1)  # each turn a section of its own: the second waits
    r1, r2, _ = replicas
    timeline, of_a, of_b = _two_jobs()
    t1, t2 = _sharing(tmp_path, r1, r2)
    told = [*(await t1.observe(of_a[0])).events, *(await t2.observe(of_b[0])).events]
    await t1.flush_due(clock.now_ms())  # r1 caught up: its copy is at the store's version
    section = r1.rules_section
    first_inside, r2_committed = asyncio.Event(), asyncio.Event()
    calls = 0

    @contextlib.asynccontextmanager
    async def interleaved(reads: SectionReads | None = None) -> AsyncIterator[SectionView]:
        nonlocal calls
        calls += 1
        if calls == 1:  # the poll's turn: r2 commits right after it, before the other turn gets the lock
            async with section(reads) as view:
                first_inside.set()
                yield view
            told.extend((await t2.observe(of_b[10])).events)
            r2_committed.set()
        else:
            await r2_committed.wait()
            async with section(reads) as view:
                yield view

    reads = _whole_reads(r1)
    r1.rules_section = interleaved  # type: ignore[method-assign]  # orders the turns; the store answers
    async with asyncio.timeout(30):
        poll = asyncio.create_task(t1.observe(of_a[10]))
        await first_inside.wait()
        flush = asyncio.create_task(t1.flush_due(clock.now_ms()))  # asks for the log after the version cached now
        told.extend((await poll).events)
        await flush
    assert reads == []  # two versions came in the log read: its own (already applied) and r2's
    assert t1.rules.cached == await load_rule_state(r1)
    await _digest_holds(t1, clock, timeline, told)


async def test_turns_queued_behind_full_sections_read_from_the_log_only_what_other_replicas_wrote(
    replicas: list[PostgresStore], clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A turn asked, as it queued, for the log since the version its process knew then: the polls of a slot, queued
    # together, each read back the entries of every turn of their own process ahead of them (with one replica, all
    # of them for nothing): 526,572 rows of `state_rows` fetched in 10 s by three replicas on `many`. (Since then a
    # slot's turns share a section; those that queue behind a full one still take sections of their own.)
    monkeypatch.setattr(shared_rules, "BATCH_TURNS", 1)
    r1, r2, _ = replicas
    _, of_a, of_b = _two_jobs()
    t1, t2 = _sharing(tmp_path, r1, r2)
    await t1.observe(of_a[0])  # r1's copy read and current
    logged: list[int] = []
    section = r1.rules_section

    @contextlib.asynccontextmanager
    async def counted(reads: SectionReads | None = None) -> AsyncIterator[SectionView]:
        async with section(reads) as view:
            logged.append(len(view.rows))
            yield view

    r1.rules_section = counted  # type: ignore[method-assign]  # counts the log rows each turn read; the store answers
    async with asyncio.timeout(30):
        await asyncio.gather(*(t1.observe(snapshot) for snapshot in of_a[1:8]))  # queued together, one process
    assert len(logged) >= 7 and sum(logged) == 0  # each turn's own process wrote the entries before it: none read
    await t2.observe(of_b[0])  # another replica's turn: one entry
    await t1.observe(of_a[10])
    assert logged[-1] == 1


async def test_turns_queued_together_route_in_one_section_and_are_committed_together(
    replicas: list[PostgresStore], clock: ManualClock, tmp_path: Path
) -> None:
    # Three replicas handed the rule-state lock over at every routed poll: on `many`, 0.77 of them waited for it on
    # average through the busy windows. A slot's polls queued together now take it once.
    r1, r2, _ = replicas
    timeline, of_a, of_b = _two_jobs()
    t1, t2 = _sharing(tmp_path, r1, r2)
    told = [*(await t1.observe(of_a[0])).events, *(await t2.observe(of_b[0])).events]
    sections = _sections(r1)
    async with asyncio.timeout(30):
        observed = await asyncio.gather(*(t1.observe(snapshot) for snapshot in of_a[1:8]))
    assert all(observation.events for observation in observed)  # seven routed polls ...
    assert len(sections) == 1  # ... in one section: one lock, one catch-up read (r2's entry), one transaction
    assert len(sections[0].rows) == 1
    told += [event for observation in observed for event in observation.events]
    assert await r2.load_memory(of_a[0].job.id) == t1.memory(of_a[0].job.id)  # the last of them, committed
    assert t1.rules.cached == await load_rule_state(r1)
    await _digest_holds(t2, clock, timeline, told)


async def test_a_section_about_to_begin_waits_a_moment_for_the_polls_still_under_way(
    replicas: list[PostgresStore], clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slot's polls end over tens of milliseconds; each one that came to its turn after the slot's section had
    # begun took a section of its own: with three replicas a third of the sections held a single turn (issue 28).
    r1, r2, _ = replicas
    _, of_a, of_b = _two_jobs()
    (t1,) = _sharing(tmp_path, r1)
    await t1.observe(of_a[0])
    await t1.observe(of_b[0])
    sections = _sections(r1)

    async def poll(snapshot: Snapshot, fetched: asyncio.Event) -> bool:
        with t1.rules.polling():
            await fetched.wait()  # its responses still on their way
            return bool((await t1.observe(snapshot)).events)

    monkeypatch.setattr(shared_rules, "GATHER_S", 30.0)  # as long as it takes: the test moves, not the clock
    now, later = asyncio.Event(), asyncio.Event()
    now.set()
    second = asyncio.create_task(poll(of_b[1], later))
    await until(lambda: t1.rules._coming == 1)  # under way
    first = asyncio.create_task(poll(of_a[1], now))
    await until(lambda: t1.rules._batch is not None)  # the first has come to its turn ...
    assert sections == []  # ... and its section waits for the second poll, under way
    later.set()
    assert await asyncio.wait_for(asyncio.gather(first, second), timeout=30) == [True, True]
    assert len(sections) == 1  # both routed in one

    monkeypatch.setattr(shared_rules, "GATHER_S", 0.05)  # a poll that does not come in time holds nobody up
    late = asyncio.Event()
    slow = asyncio.create_task(poll(of_b[2], late))
    await until(lambda: t1.rules._coming == 1)
    assert await asyncio.wait_for(poll(of_a[5], now), timeout=30)
    assert len(sections) == 2 and not slow.done()
    late.set()
    assert await asyncio.wait_for(slow, timeout=30)
    assert len(sections) == 3
    assert await r2.load_memory(of_b[2].job.id) == t1.memory(of_b[2].job.id)


@pytest.mark.parametrize("known", [True, False], ids=["lease-lost-known", "lease-lost-at-commit"])
async def test_a_turn_failing_in_a_shared_section_rolls_it_back_and_the_others_are_recorded_next_cycle(
    replicas: list[PostgresStore], clock: ManualClock, tmp_path: Path, known: bool
) -> None:
    r1, r2, _ = replicas
    timeline, of_a, of_b = _two_jobs()
    job_a, job_b = of_a[0].job.id, of_b[0].job.id
    await r1.hold([job_a, job_b], clock.now_ms())
    (t1,) = _sharing(tmp_path, r1)
    told = [*(await t1.observe(of_a[0])).events, *(await t1.observe(of_b[0])).events]
    if known:  # r1's share shrank (r2 started): it let job_b go, and knows it — its commit fails before it is sent
        clock.advance(TTL_MS // 2)
        await r1.hold([job_a], clock.now_ms())
        assert (await r2.hold([job_b], clock.now_ms())).acquired == {job_b}
    else:  # r2 took job_b over while r1 was paused, unbeknown to r1: its commit fails at the section's COMMIT
        async with await psycopg.AsyncConnection.connect(r1.path, autocommit=True) as conn:
            await conn.execute("UPDATE job_leases SET holder = 'r2', epoch = epoch + 1 WHERE job_id = %s", (job_b,))
    stored_a = await r1.load_memory(job_a)
    async with asyncio.timeout(30):
        outcomes = await asyncio.gather(t1.observe(of_a[30]), t1.observe(of_b[30]), return_exceptions=True)
    # job_b's lease lost, seen in its own turn or at the section's end: each poll says why it was not recorded
    assert {type(outcome) for outcome in outcomes} == {LeaseLostError, BatchRolledBackError}
    assert all(job_b in str(outcome) for outcome in outcomes)
    assert await r1.load_memory(job_a) == stored_a  # nothing of the section committed
    told += (await t1.observe(of_a[30])).events  # the next cycle: job_a's poll recorded, its events told once
    assert t1.rules.cached == await load_rule_state(r1)
    await _digest_holds(t1, clock, timeline, told)


async def test_turns_sharing_a_section_the_database_refuses_are_each_told_it_cannot_write(
    replicas: list[PostgresStore], clock: ManualClock, tmp_path: Path, postgres_database: str
) -> None:
    # Every turn of the section is told what the store said (the cycle then holds polls until the database writes
    # again), not that another turn's failure rolled it back.
    r1, _, _ = replicas
    timeline, of_a, _ = _two_jobs()
    (t1,) = _sharing(tmp_path, r1)
    told = [*(await t1.observe(of_a[0])).events]
    set_read_only(postgres_database, True)  # a primary demoted to a standby
    try:
        await reconnected(r1)
        # r1's section lock held, as by a section ahead of them (a digest's): they queue together. (Not the section
        # itself: tasks created inside it would take its connection for theirs.)
        async with r1._rules_turn:
            polls = [asyncio.create_task(t1.observe(snapshot)) for snapshot in of_a[1:4]]
            await until(lambda: t1.rules._batch is not None and t1.rules._batch.admitted == 3)
        outcomes = await asyncio.gather(*polls, return_exceptions=True)
        assert [type(outcome) for outcome in outcomes] == [StoreWriteError] * 3, outcomes
    finally:
        set_read_only(postgres_database, False)
    await reconnected(r1)
    told += (await t1.observe(of_a[3])).events  # writes again: the next cycle records what they saw
    assert t1.rules.cached == await load_rule_state(r1)
    await _digest_holds(t1, clock, timeline, told)


@pytest.mark.parametrize("cancelled", [0, 1], ids=["the-first-turn", "a-turn-that-joined"])
async def test_a_poll_cancelled_in_a_shared_section_neither_holds_the_others_up_nor_loses_their_changes(
    replicas: list[PostgresStore], clock: ManualClock, tmp_path: Path, cancelled: int
) -> None:
    # A stop cancels the polls still running (`PollCycle.settle`). The first turn of a section waits for the turns
    # that joined it; one that never counted as finished would hold it, and the lock, for ever.
    r1, r2, _ = replicas
    timeline, of_a, of_b = _two_jobs()
    t1, t2 = _sharing(tmp_path, r1, r2)
    told = [*(await t1.observe(of_a[0])).events, *(await t2.observe(of_b[0])).events]
    async with asyncio.timeout(30):
        # r1's section lock held, as by a section ahead of them (a digest's): they queue together. (Not the section
        # itself: tasks created inside it would take its connection for theirs.)
        async with r1._rules_turn:
            polls = [asyncio.create_task(t1.observe(snapshot)) for snapshot in of_a[1:4]]
            await until(lambda: t1.rules._batch is not None and t1.rules._batch.admitted == 3)
            batch = t1.rules._batch
            polls[cancelled].cancel()
        _, pending = await asyncio.wait(polls, timeout=20)  # not cancelled at a deadline: a section waits that out
        if pending:  # let the section end, so that the test fails rather than hangs
            batch.finished = batch.admitted
            batch.idle.set()
        assert not pending, "the section waited for a turn that would never finish"
        outcomes = await asyncio.gather(*polls, return_exceptions=True)
        assert isinstance(outcomes[cancelled], asyncio.CancelledError)
        others = [outcome for index, outcome in enumerate(outcomes) if index != cancelled]
        if cancelled == 0:  # the section never began: the others were not recorded, and say so
            assert all(isinstance(outcome, BatchRolledBackError) for outcome in others), others
        else:  # the others routed in the section, and were committed
            assert all(not isinstance(outcome, BaseException) for outcome in others), others
            told += [event for outcome in others if not isinstance(outcome, BaseException) for event in outcome.events]
        told += (await t1.observe(of_a[4])).events  # the next poll records what was not
        assert t1.rules.cached == await load_rule_state(r1)
        told += (await t2.observe(of_b[10])).events  # and the lock is free for the other replica
    await _digest_holds(t1, clock, timeline, told)


async def test_a_copy_read_outside_a_turn_is_caught_up_by_the_next_turn_not_read_again(
    replicas: list[PostgresStore], clock: ManualClock, tmp_path: Path
) -> None:
    # A replica at rest reads the rule state outside a turn (a poll with nothing to route); its first busy turn then
    # read it all again, not knowing its version: half a second of each of three replicas' CPU on 'many'.
    r1, r2, _ = replicas
    timeline, _, of_b = _two_jobs()
    t1, t2 = _sharing(tmp_path, r1, r2)
    told = [*(await t2.observe(of_b[0])).events]
    reads = _whole_reads(r1)
    async with t1.rules.turn(exclusive=False):
        pass  # read whole, outside a turn
    whole = len(reads)
    assert whole > 0
    told += (await t2.observe(of_b[10])).events  # r2 moves the version on meanwhile
    await t1.flush_due(clock.now_ms())
    assert len(reads) == whole  # caught up from the log
    assert t1.rules.cached == await load_rule_state(r1)
    await _digest_holds(t1, clock, timeline, told)


async def test_a_commit_inside_a_rule_state_section_joins_its_transaction(
    replicas: list[PostgresStore], clock: ManualClock
) -> None:
    # One transaction and one connection for a routed poll: its writes are committed, and the lock let go, when the
    # section ends — and a section that fails after them leaves nothing of them.
    r1, r2, _ = replicas
    events = diff(None, _timeline()[0]).events
    async with r1.rules_section():
        await r1.commit(events=events, state_rows=[StateRow("t", "k", "v")])
        await r1.commit(events=events)  # the same events again: kept once
        assert await r2.get_state("t", "k") is None and await r2.events() == []  # not committed yet
    assert await r2.get_state("t", "k") == "v" and len(await r2.events()) == len(events)
    with pytest.raises(RuntimeError):
        async with r1.rules_section():
            await r1.commit(state_rows=[StateRow("t", "k", "w")])
            raise RuntimeError("after the commit, before the section ends")
    assert await r2.get_state("t", "k") == "v"


async def test_a_turn_that_fails_after_its_commit_reads_again_what_the_commit_changed(
    replicas: list[PostgresStore], clock: ManualClock, tmp_path: Path
) -> None:
    config = _digest(tmp_path, "'*'", "1h")
    r1, _, _ = replicas
    router = Router(config.rules, config.silences)
    t1 = JobTracker(r1, router=router, shared_rules=True)
    timeline = _timeline()
    await t1.observe(timeline[0])
    later = diff(None, timeline[30])
    rules = t1.rules
    with pytest.raises(RuntimeError):
        async with rules.turn(exclusive=True) as state:
            router.route(state, later.events, None, timeline[30].at_ms)
            async with rules.recording(state.take_changes()) as rows:
                await r1.commit(state_rows=rows)
            raise RuntimeError("after the commit, before the section ends: nothing of it is committed")
    reads = _whole_reads(r1)
    async with rules.turn(exclusive=True) as state:
        assert reads == []  # the rows that commit changed are read again, not the whole state
        assert state == await load_rule_state(r1)  # the group window as the store has it, without those events


async def test_a_replica_behind_by_several_versions_catches_up_in_the_round_trip_of_its_lock(
    replicas: list[PostgresStore], clock: ManualClock, tmp_path: Path
) -> None:
    r1, r2, _ = replicas
    _, of_a, of_b = _two_jobs()
    t1, t2 = _sharing(tmp_path, r1, r2)
    await t1.observe(of_a[0])
    before = int(await r1.get_state(VERSION, VERSION_KEY) or "0")
    for snapshot in of_b[:20]:
        await t2.observe(snapshot)  # each poll with events moves the version on and logs its rows
    behind = int(await r1.get_state(VERSION, VERSION_KEY) or "0") - before
    assert behind >= 3
    reads: list[str] = []
    views: list[SectionView] = []
    get_state, load_range, section = r1.get_state, r1.load_state_range, r1.rules_section

    async def counted_get(namespace: str, key: str) -> str | None:
        reads.append(f"get {namespace}")
        return await get_state(namespace, key)

    async def counted_range(namespace: str, first_key: str, last_key: str) -> list[StateRow]:
        reads.append(f"range {namespace}")
        return await load_range(namespace, first_key, last_key)

    @contextlib.asynccontextmanager
    async def seen_section(reads: SectionReads | None = None) -> AsyncIterator[SectionView]:
        async with section(reads) as view:
            views.append(view)
            yield view

    # counts the reads, the store answers
    r1.get_state = counted_get  # type: ignore[method-assign]
    r1.load_state_range = counted_range  # type: ignore[method-assign]
    r1.rules_section = seen_section  # type: ignore[method-assign]
    whole = _whole_reads(r1)
    await t1.flush_due(clock.now_ms())  # nothing due: the turn alone, which brings r1 up to date
    assert reads == whole == []  # no read of its own: the version and every entry since came with the lock
    (view,) = views
    assert view.body == str(before + behind)
    assert [row.key for row in view.rows] == [log_key(version) for version in range(before + 1, before + behind + 1)]
    assert t1.rules.cached == await load_rule_state(r1)


async def test_a_commit_refused_for_a_lost_lease_reads_again_only_the_rows_it_would_have_written(
    replicas: list[PostgresStore], clock: ManualClock, tmp_path: Path
) -> None:
    # A replica lost a lease (its share shrank, or a late heartbeat); the poll's commit is refused. The rule state
    # cached beside it differs from the store in that commit's rows alone: those are read again — not the whole
    # state at every later poll (the first pass over 10,000 jobs had a replica spend 88 % of its CPU re-reading it
    # after each refused commit).
    r1, r2, _ = replicas
    timeline, of_a, of_b = _two_jobs()
    job_a, job_b = of_a[0].job.id, of_b[0].job.id
    await r1.hold([job_a, job_b], clock.now_ms())
    (t1,) = _sharing(tmp_path, r1)
    told = [*(await t1.observe(of_a[0])).events, *(await t1.observe(of_b[0])).events]
    clock.advance(TTL_MS // 2)
    await r1.hold([job_a], clock.now_ms())  # its share shrank meanwhile (r2 started): job_b is let go
    assert (await r2.hold([job_b], clock.now_ms())).acquired == {job_b}
    with pytest.raises(LeaseLostError):
        await t1.observe(of_b[30])  # its events were routed into the group window of the cache, then refused
    reads: list[str] = []
    get_state = r1.get_state

    async def counted_get(namespace: str, key: str) -> str | None:
        reads.append(namespace)
        return await get_state(namespace, key)

    r1.get_state = counted_get  # type: ignore[method-assign]  # counts the reads, the store answers
    whole = _whole_reads(r1)
    told += (await t1.observe(of_a[30])).events
    assert whole == [] and reads == [
        "rules.group"
    ]  # the one row the refused commit would have changed: the group window
    assert t1.rules.cached == await load_rule_state(r1)
    await _digest_holds(t1, clock, timeline, told)  # none of the refused


async def test_a_job_taken_over_is_compared_by_its_hash_and_its_first_unchanged_poll_written(
    replicas: list[PostgresStore], clock: ManualClock
) -> None:
    r1, r2, _ = replicas
    snapshot = _timeline()[0]
    job_id = snapshot.job.id
    await r1.hold([job_id], clock.now_ms())
    await JobTracker(r1).observe(dataclasses.replace(snapshot, fingerprint="bytes-hash"))
    clock.advance(TTL_MS)
    tracker = JobTracker(r2)
    for job in (await r2.hold([job_id], clock.now_ms())).acquired:
        tracker.forget(job)
    memory = await tracker.taken_over_memory(job_id)  # what r1 committed: its fingerprint tells unchanged bytes
    assert memory is not None and memory.fingerprint == "bytes-hash" and memory == await r2.load_memory(job_id)
    await tracker.observe_unchanged(job_id, clock.now_ms())
    stored = await r2.load_memory(job_id)
    assert stored is not None and stored.last_seen_ms == clock.now_ms()  # the new holder's first poll
    await tracker.observe_unchanged(job_id, clock.now_ms() + 1000)
    assert await r2.load_memory(job_id) == stored  # later unchanged polls write nothing
    assert await JobTracker(r2).taken_over_memory(job_id) is None  # not taken over: nothing to load


@pytest.mark.parametrize(("interval", "reused"), [("10s", True), ("2s", False)])
async def test_a_cycle_takes_the_heartbeats_leases_only_where_heartbeats_come_at_least_as_often(
    postgres_database: str, tmp_path: Path, interval: str, reused: bool
) -> None:
    """A cycle takes the last heartbeat's answer (no transaction of its own) where heartbeats (TTL / 3 = 5 s) come at
    least as often as cycles; where cycles come more often (2 s), each renews: their takeovers of a dead replica's
    jobs are the sooner ones (the failover bound: TTL + the shorter of a heartbeat and a poll interval)."""

    async def renewal() -> str:  # the version of this replica's row: a new one at every renewal
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            row = await (await conn.execute("SELECT xmin::text FROM replicas")).fetchone()
            return str(row[0]) if row else ""

    on = _service_on(postgres_database, tmp_path, lease_ttl="15s", poll_interval=interval)
    async with on as (service, url), service.started():
        await service.poll_once()
        first = await renewal()
        await service.poll_once()  # at once: within a heartbeat period of the first cycle's renewal
        assert (await renewal() == first) is reused


async def test_the_rule_timers_follow_the_heartbeats_claim(postgres_database: str, tmp_path: Path) -> None:
    """A replica flushes the rule timers (and sends the digests) while its last heartbeat, within two heartbeat
    periods (TTL 15 s: 10 s), held the claim — no transaction of its own each second; a replica stopping in order
    frees the claim, and the next heartbeat of another takes it."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    on_a = _service_on(postgres_database, tmp_path / "a", lease_ttl="15s")
    on_b = _service_on(postgres_database, tmp_path / "b", lease_ttl="15s")
    async with on_a as (first, _), on_b as (second, _), contextlib.AsyncExitStack() as first_running:
        assert first.gate is not None and second.gate is not None
        await first_running.enter_async_context(first.started())
        await first.poll_once()
        clock = first.clock
        assert isinstance(clock, ManualClock)
        async with second.started():
            await second.poll_once()
            assert first.gate.holds_timers() and not second.gate.holds_timers()
            clock.advance(9_999)
            assert first.gate.holds_timers()
            clock.advance(1)  # two heartbeats missed: no longer sure
            assert not first.gate.holds_timers()
            await first.heartbeat()
            assert first.gate.holds_timers()
            await first_running.aclose()  # a stop in order: its leases and claims are free at once
            await second.heartbeat()
            assert second.gate.holds_timers()


async def test_a_stop_waits_for_a_heartbeat_under_way_instead_of_cancelling_it(
    postgres_database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="benchwatch")
    async with _service_on(postgres_database, tmp_path, lease_ttl="5s") as (service, url):
        running = asyncio.create_task(service.run(stop))
        try:
            async with asyncio.timeout(10):  # the first cycle (which renews the leases too) has ended
                while not (await service.readiness())[0]:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as blocker, blocker.transaction():
                await blocker.execute("SELECT pg_advisory_xact_lock(%s)", (LEASE_LOCK_KEY,))
                async with asyncio.timeout(10):  # until the next heartbeat waits for the lease lock: then stop
                    while not await _waiting_for_advisory_lock(blocker):  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                stop.set()
                async with asyncio.timeout(10):  # the stop is under way, the heartbeat still waiting
                    while not any(r.getMessage().startswith("stopping") for r in caplog.records):  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
            # the lock is free: the heartbeat ends, then the stop
            assert await asyncio.wait_for(running, timeout=20) == 0
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(running, timeout=20)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text


@contextlib.asynccontextmanager
async def _service_on(
    postgres_database: str, tmp_path: Path, *, lease_ttl: str, poll_interval: str | None = None
) -> AsyncIterator[tuple[Service, str]]:
    """A replica's `Service` on a database of the test's own (and its URL), watching a simulator with no jobs."""
    url = Backend("postgres", tmp_path, postgres_database).location()
    sim_server = TestServer(create_app(Simulator(clock=ManualClock(), api_key="sim-key")))
    await sim_server.start_server()
    try:
        config = write_config(tmp_path, str(sim_server.make_url("")).rstrip("/"), "http://127.0.0.1:9/hook")
        state = f"state: {{url: '{url}', lease_ttl: {lease_ttl}}}"
        text = config.read_text().replace("state: {path: ./state.db}", state)
        if poll_interval is not None:
            text = text.replace("poll_interval: 1h", f"poll_interval: {poll_interval}")
        config.write_text(text)
        yield Service(load_config(config), clock=ManualClock()), url
    finally:
        await sim_server.close()


async def _waiting_for_advisory_lock(conn: psycopg.AsyncConnection[Any]) -> bool:
    cursor = await conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    row = await cursor.fetchone()
    return row is not None and int(row[0]) > 0


def _sharing(tmp_path: Path, *stores: PostgresStore) -> list[JobTracker]:
    """A tracker per replica, routing every event into one group window of an hour (`_digest`), the rule state
    shared between them."""
    config = _digest(tmp_path, "'*'", "1h")
    return [JobTracker(store, router=Router(config.rules, config.silences), shared_rules=True) for store in stores]


def _two_jobs() -> tuple[list[Snapshot], list[Snapshot], list[Snapshot]]:
    """The timeline of `tests.test_store`, and the snapshots of each of its two jobs."""
    timeline = _timeline()
    job_a, job_b = sorted({snapshot.job.id for snapshot in timeline})
    return (
        timeline,
        [snapshot for snapshot in timeline if snapshot.job.id == job_a],
        [snapshot for snapshot in timeline if snapshot.job.id == job_b],
    )


def _sections(store: PostgresStore) -> list[SectionView]:
    """From now on, what each rule-state section of `store` read as it began, in order; the store still answers."""
    views: list[SectionView] = []
    section = store.rules_section

    @contextlib.asynccontextmanager
    async def seen(reads: Any = None) -> AsyncIterator[SectionView]:
        async with section(reads) as view:
            views.append(view)
            yield view

    store.rules_section = seen  # type: ignore[method-assign]
    return views


async def _digest_holds(tracker: JobTracker, clock: ManualClock, timeline: list[Snapshot], told: list[Event]) -> None:
    """Once the hour of `_sharing`'s group window has passed: its one digest holds every event `told`, once."""
    clock.set(max(snapshot.at_ms for snapshot in timeline) + 3_600_000)
    (digest,) = (await tracker.flush_due(clock.now_ms())).notifications
    assert sorted(event.id for event in digest.events) == sorted(event.id for event in told)


def _whole_reads(store: PostgresStore) -> list[str]:
    """From now on, the namespaces `store` reads whole (`load_state_rows`), in order; the store still answers."""
    reads: list[str] = []
    load_rows = store.load_state_rows

    async def counted(namespace: str) -> list[StateRow]:
        reads.append(namespace)
        return await load_rows(namespace)

    store.load_state_rows = counted  # type: ignore[method-assign]
    return reads


def _digest(folder: Path, on: str, wait: str) -> Config:
    """A config with one rule that gathers every `on` event of every job into one group for `wait`."""
    path = folder / "benchwatch.yaml"
    path.write_text(
        "notifiers: {screen: {type: console}}\n"
        f"rules: [{{name: digest, on: {on}, notify: screen, group_by: [], group_wait: {wait}}}]\n"
    )
    return load_config(path, {}).config


async def test_the_idle_listener_hears_its_server_go_and_come_back_at_once(
    throwaway_postgres: ThrowawayPostgres,
) -> None:
    """The LISTEN connection's wait woke every 0.1 s (psycopg's interval) to find nothing: ten wake-ups a second of
    every replica. It now wakes for a NOTIFY or its socket alone: a server that goes away is still heard at once —
    the worker is woken by each failed reconnect and again once the listener is back — and a NOTIFY then arrives."""
    wakes = asyncio.Event()
    store = PostgresStore(throwaway_postgres.url, connect_timeout_s=1)
    await store.open()
    listening = asyncio.create_task(store.listen(wakes.set))
    try:
        await asyncio.wait_for(wakes.wait(), timeout=10)  # listening: the first wake
        wakes.clear()
        await asyncio.to_thread(throwaway_postgres.stop)
        await asyncio.wait_for(wakes.wait(), timeout=5)  # not after a 60-s look: the cut socket wakes the wait
        await asyncio.to_thread(throwaway_postgres.start)
        deadline = asyncio.get_running_loop().time() + 10
        while True:  # listening again: a command's NOTIFY (no sender named) wakes it
            wakes.clear()
            with contextlib.suppress(psycopg.OperationalError):  # (the server may still be starting)
                async with await psycopg.AsyncConnection.connect(throwaway_postgres.url, autocommit=True) as conn:
                    await conn.execute("SELECT pg_notify(%s, '')", (OUTBOX_CHANNEL,))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakes.wait(), timeout=0.5)
                    break
            assert asyncio.get_running_loop().time() < deadline, "the listener never heard a NOTIFY again"
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        await store.close()


async def test_while_no_notify_can_come_the_worker_is_woken_every_second() -> None:
    """The server refusing the listener's connection (too many clients): the worker idled up to a minute with the
    other replicas' notifications due. Each failed attempt wakes it instead."""
    store = PostgresStore("postgresql://bw@127.0.0.1:1/db", connect_timeout_s=1)  # nothing listens there
    woken = asyncio.Event()
    listening = asyncio.create_task(store.listen(woken.set))
    try:
        await asyncio.wait_for(woken.wait(), timeout=5)
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening

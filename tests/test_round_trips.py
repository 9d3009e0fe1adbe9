"""What a replica's writes cost in round trips to PostgreSQL, counted by a proxy in front of the server: each round
trip is a wait, and with three replicas on two cores each wait is a wake-up of its own — the figure that made three
replicas spend more CPU than one on the same changes (docs/performance.md, "Replicas that add up")."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import psycopg
import pytest

from tests.pgturns import RoundTrips, round_trips
from tests.test_delivery import _notes
from tests.test_leases import TTL_MS, _sharing, _two_jobs
from watcher.core.clock import ManualClock
from watcher.core.records import DeliveryAttempt, DeliveryOutcome, OutboxStatus, StateRow
from watcher.diff.jobs import diff
from watcher.store.pgtx import one_transaction
from watcher.store.postgres import PostgresStore

pytestmark = pytest.mark.slow  # a PostgreSQL database made and dropped per test


@pytest.fixture
async def counted(postgres_database: str) -> AsyncIterator[tuple[PostgresStore, RoundTrips]]:
    """A replica's store whose every connection goes through the counting proxy."""
    async with round_trips() as trips:
        store = PostgresStore(trips.url(postgres_database), holder="r1", lease_ttl_ms=TTL_MS, caller_clock=True)
        await store.open()
        try:
            yield store, trips
        finally:
            await store.close()


async def _turns(trips: RoundTrips, work: Awaitable[object]) -> int:
    connections, before = trips.connections, trips.turns
    await work
    assert trips.connections == connections  # the pooled connection, reused: no connection's set-up counted
    return trips.turns - before


async def test_a_polls_commit_with_its_fence_is_one_round_trip(
    counted: tuple[PostgresStore, RoundTrips], clock: ManualClock
) -> None:
    store, trips = counted
    _, of_a, _ = _two_jobs()
    job_id = of_a[0].job.id
    await store.hold([job_id], clock.now_ms())
    result = diff(None, of_a[0])
    commit = store.commit(
        memory=result.memory,
        events=result.events,
        state_rows=[StateRow("t", "k", "v")],
        notifications=_notes("h", 2, clock),
    )
    assert await _turns(trips, commit) == 1  # BEGIN, the fence, the writes and the COMMIT together
    assert await store.load_memory(job_id) == result.memory and len(await store.events()) == len(result.events)


async def test_a_routed_poll_is_two_round_trips_the_lock_with_its_reads_then_the_writes_with_the_commit(
    counted: tuple[PostgresStore, RoundTrips], clock: ManualClock, tmp_path: Path
) -> None:
    store, trips = counted
    _, of_a, _ = _two_jobs()
    await store.hold([of_a[0].job.id], clock.now_ms())
    (tracker,) = _sharing(tmp_path, store)
    await tracker.observe(of_a[0])  # the first: the memory and the whole rule state read
    observation = await tracker.observe(of_a[10])
    assert observation.events  # routed: a turn under the rule-state lock
    assert await _turns(trips, tracker.observe(of_a[30])) == 2


async def test_a_delivery_is_a_round_trip_to_claim_and_one_to_record(
    counted: tuple[PostgresStore, RoundTrips], clock: ManualClock
) -> None:
    store, trips = counted
    await store.commit(notifications=_notes("h", 3, clock))
    claims: list[object] = []

    async def claim() -> None:
        claims.extend(await store.due_notifications(clock.now_ms()))

    assert await _turns(trips, claim()) == 1 and len(claims) == 3
    attempt = DeliveryAttempt("nt_h_000", "h", 1, clock.now_ms(), clock.now_ms(), DeliveryOutcome.SENT, None, None)
    record = store.record_delivery(attempt, status=OutboxStatus.SENT, next_attempt_ms=0)
    assert await _turns(trips, record) == 1  # BEGIN, the statement and the COMMIT together
    assert [item.status for item in await store.outbox_items(status="sent")] == [OutboxStatus.SENT]


async def test_a_heartbeat_is_two_round_trips_the_leases_steps_then_the_take_and_the_claim_with_the_commit(
    counted: tuple[PostgresStore, RoundTrips], clock: ManualClock
) -> None:
    store, trips = counted
    await store.hold(["bmj_a"], clock.now_ms())  # the heartbeat's own connection, made
    holdings = []

    async def beat() -> None:
        holdings.append(await store.hold(["bmj_a", "bmj_b"], clock.now_ms()))

    assert await _turns(trips, beat()) == 2
    (holding,) = holdings
    assert holding.held == {"bmj_a", "bmj_b"} and holding.acquired == {"bmj_b"} and holding.timers


async def test_a_transaction_in_one_round_trip_refuses_a_connection_that_prepares_statements(
    postgres_database: str,
) -> None:
    # Prepared statements queued behind a failed one would be prepared for psycopg and not for the server.
    url = f"postgresql://postgres@127.0.0.1:5432/{postgres_database}"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        with pytest.raises(ValueError, match="prepare_threshold=None"):
            async with one_transaction(conn):
                await conn.execute("SELECT 1")

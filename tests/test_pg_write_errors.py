"""PostgreSQL that answers but cannot write — a full disk, a failing disk, a read-only database — is a
`StoreWriteError` (store health: polls and sends held, resumed by themselves), not the "database away" `StoreError`.
The real server raises each SQLSTATE: a trigger raising it, or `default_transaction_read_only` set on the database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from tests.conftest import POSTGRES_ADMIN_URL
from tests.running_services import database_url
from watcher.app.replicas import LeaseGate
from watcher.core.clock import ManualClock
from watcher.core.events import Counters
from watcher.core.memory import JobMemory
from watcher.core.records import DeliveryAttempt, DeliveryOutcome, OutboxStatus, StateRow
from watcher.core.storehealth import StoreHealth
from watcher.pipeline.tracker import JobTracker
from watcher.store.errors import StoreError, StoreWriteError
from watcher.store.postgres import PostgresStore

pytestmark = pytest.mark.slow  # replicas on PostgreSQL: databases made and dropped per test


def _memory(job_id: str) -> JobMemory:
    return JobMemory(
        job_id=job_id, job_name="nightly", state="running", finished=False, counters=Counters(), runs={},
        unresolved={}, first_seen_ms=0, last_seen_ms=0, last_change_ms=0,
    )  # fmt: skip


def _admin(database: str, *statements: str) -> None:
    with psycopg.connect(database_url(database), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


def set_read_only(database: str, on: bool) -> None:
    """Set (or reset) `default_transaction_read_only` on the database, then end its other sessions (waiting until
    they are gone), so every new one starts with the setting — as a primary demoted to a standby would."""
    setting = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{database}" {setting}'.encode())
        conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )


async def reconnected(store: PostgresStore) -> None:
    """Read until the pool has let go of the sessions the server ended (each failure is 'unreachable')."""
    for _ in range(5):
        try:
            await store.load_memories()
            return
        except StoreError as exc:
            assert not isinstance(exc, StoreWriteError) and not store.reachable
    raise AssertionError("the store never read again")


@pytest.fixture
async def store(postgres_database: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(database_url(postgres_database), connect_timeout_s=2) as opened:
        yield opened


@pytest.mark.parametrize(
    ("errcode", "sqlstate"), [("disk_full", "53100"), ("io_error", "58030"), ("read_only_sql_transaction", "25006")]
)
async def test_a_server_that_cannot_write_raises_store_write_error_and_stays_reachable(
    store: PostgresStore, postgres_database: str, errcode: str, sqlstate: str
) -> None:
    _admin(
        postgres_database,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$ BEGIN RAISE EXCEPTION 'could not write' USING ERRCODE = '{errcode}'; END $$",
        "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION refuse()",
    )
    with pytest.raises(StoreWriteError, match=f"cannot write: could not write \\(SQLSTATE {sqlstate}\\)"):
        await store.commit(memory=_memory("bmj_1"), state_rows=[StateRow("n", "k", "v")])
    assert store.reachable  # the server answered: /readyz says the store cannot write, not that it is away
    assert await store.load_memories() == {} and await store.get_state("n", "k") is None  # nothing half-written
    _admin(postgres_database, "DROP TRIGGER refuse ON jobs")
    await store.commit(memory=_memory("bmj_1"))
    assert list(await store.load_memories()) == ["bmj_1"]


@pytest.mark.parametrize("errcode", ["out_of_memory", "configuration_limit_exceeded"])
async def test_other_resource_errors_are_not_write_errors(
    store: PostgresStore, postgres_database: str, errcode: str
) -> None:
    """Short of memory or over a configured limit, reads fail as well: passing, or a setting to fix — not held."""
    _admin(
        postgres_database,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$ BEGIN RAISE EXCEPTION 'short' USING ERRCODE = '{errcode}'; END $$",
        "CREATE TRIGGER refuse BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION refuse()",
    )
    with pytest.raises(StoreError) as raised:
        await store.commit(memory=_memory("bmj_1"))
    assert not isinstance(raised.value, StoreWriteError)


async def test_a_role_without_the_privilege_gets_a_one_line_store_error_not_a_driver_error(
    store: PostgresStore, postgres_database: str
) -> None:
    """A permission mistake (a role without its grants, a file system gone read-only under the data directory) is a
    store error that says what to fix — polled again next cycle, logged in one line — not a driver exception."""
    _admin(
        postgres_database,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'permission denied for table jobs' USING ERRCODE = 'insufficient_privilege'; END $$",
        "CREATE TRIGGER refuse BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION refuse()",
    )
    with pytest.raises(StoreError, match=r"permission denied for table jobs \(SQLSTATE 42501\): grant") as raised:
        await store.commit(memory=_memory("bmj_1"))
    assert not isinstance(raised.value, StoreWriteError) and store.reachable
    assert "\n" not in str(raised.value)


async def test_a_read_only_database_refuses_every_write_of_a_replica_as_a_write_error(
    store: PostgresStore, postgres_database: str
) -> None:
    clock = ManualClock()
    health = StoreHealth()
    gate = LeaseGate(store, JobTracker(store), clock, health)
    assert await gate.admit(["bmj_1"]) == {"bmj_1"}
    await store.commit(memory=_memory("bmj_1"), notifications=[])

    set_read_only(postgres_database, True)
    await reconnected(store)  # the demotion cut the sessions: unreachable until the pool reconnects
    attempt = DeliveryAttempt("nt_1", "hook", 1, 0, 0, DeliveryOutcome.SENT, None, None)
    probe = [StateRow("benchwatch", "write_probe", "x" * 65_536), StateRow("benchwatch", "write_probe", None)]
    writes = {
        "commit": store.commit(memory=_memory("bmj_1")),
        "probe": store.commit(state_rows=probe),  # PollCycle._store_writable's probe
        "hold": store.hold(["bmj_1"], clock.now_ms()),
        "claim_timers": store.claim_timers(clock.now_ms()),
        "record_delivery": store.record_delivery(attempt, status=OutboxStatus.SENT, next_attempt_ms=0),
        "due_notifications": store.due_notifications(clock.now_ms()),
    }
    for name, write in writes.items():
        with pytest.raises(StoreWriteError, match="read-only transaction"):
            await write
        assert store.reachable, name
    assert list(await store.load_memories()) == ["bmj_1"]  # reads go on

    assert await gate.heartbeat() == frozenset()  # nothing is polled that could not be recorded ...
    assert not health.writable and "read-only transaction" in health.describe(clock.now_ms())  # ... and it says why

    set_read_only(postgres_database, False)
    await reconnected(store)
    await store.commit(state_rows=probe)
    assert await store.get_state("benchwatch", "write_probe") is None  # the probe leaves nothing behind
    assert await gate.heartbeat() == {"bmj_1"}

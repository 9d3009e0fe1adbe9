"""PostgreSQL that answers but cannot write — a full disk, a failing disk, a read-only database — is a
`StoreWriteError` (store health: polls and sends held, resumed by themselves), not the "database away" `StoreError`.
The real server raises each SQLSTATE: a trigger raising it, or `default_transaction_read_only` set on the database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from tests.conftest import POSTGRES_ADMIN_URL
from tests.running_services import database_url
from watcher.api.client import RequestLimits, RunloopClient
from watcher.api.health import ApiHealth
from watcher.app.config import WatchSection
from watcher.app.cycle import PollCycle
from watcher.app.replicas import LeaseGate
from watcher.core.clock import ManualClock
from watcher.core.events import Counters
from watcher.core.memory import JobMemory
from watcher.core.records import DeliveryAttempt, DeliveryOutcome, OutboxStatus, StateRow
from watcher.core.storehealth import StoreHealth
from watcher.pipeline.tracker import JobTracker
from watcher.simulator import SimAgent, SimJobSpec, Simulator
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


async def test_a_role_granted_only_its_tables_rows_starts_on_a_current_schema(
    store: PostgresStore, postgres_database: str
) -> None:
    """The open's migration check ran `CREATE TABLE IF NOT EXISTS` even on a current schema, which needs CREATE on
    the schema: a role with the least privilege — its tables' rows — could not start."""
    role = f"bw_rows_{postgres_database[-12:]}"
    _admin(
        postgres_database,
        f"CREATE ROLE {role} LOGIN",
        f"REVOKE CREATE ON SCHEMA public FROM {role}, PUBLIC",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}",
    )
    try:
        url = database_url(postgres_database).replace("postgres@", f"{role}@", 1)
        async with PostgresStore(url, connect_timeout_s=2) as least:
            await least.commit(memory=_memory("bmj_1"))
            assert list(await least.load_memories()) == ["bmj_1"]
    finally:
        _admin(postgres_database, f"DROP OWNED BY {role}", f"DROP ROLE {role}")


async def test_polls_that_cannot_be_recorded_are_said_once_not_once_per_job_and_cycle(
    store: PostgresStore, postgres_database: str, sim: Simulator, sim_url: str, caplog: pytest.LogCaptureFixture
) -> None:  # fmt: skip
    """Connections starved (SQLSTATE 53300, as with max_connections 7 for 3 replicas): a warning per job per cycle.
    Now one, and one more when polls record again."""
    jobs = [sim.add_job(SimJobSpec(name=f"j{i}")).job_id for i in range(3)]
    watch = WatchSection.model_validate({"jobs": jobs})
    async with RunloopClient(base_url=sim_url, api_key="k", limits=RequestLimits(max_per_s=None)) as client:
        cycle = PollCycle(watch=watch, client=client, tracker=JobTracker(store), clock=sim.clock,
                          health=ApiHealth(60_000), on_notifications=lambda: None)  # fmt: skip
        _admin(
            postgres_database,
            "CREATE FUNCTION starve() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'too many clients' USING ERRCODE = 'too_many_connections'; END $$",
            "CREATE TRIGGER starve BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION starve()",
        )
        for _ in range(2):
            assert (await cycle.run()).failed == 3
        _admin(postgres_database, "DROP TRIGGER starve ON jobs")
        assert (await cycle.run()).failed == 0
    said = [r.getMessage() for r in caplog.records if r.name == "benchwatch.poll"]
    assert [line.split(" (")[0] for line in said] == ["recording polls fails", "recording polls works again"]


async def test_a_first_sighting_that_could_not_be_recorded_is_told_with_what_followed_it(
    store: PostgresStore, postgres_database: str, sim: Simulator, sim_url: str
) -> None:
    """Starved of connections, a job's first poll was not recorded; the next one diffed from nothing again and took
    the scenarios failed meanwhile for the state the job was found in: scenario.failed never told, while the
    memory marked them failed. The first sighting is kept, and recorded with what followed it."""
    spec = SimJobSpec(name="j", n_scenarios=3, agents=[SimAgent(name="a")], fail_rate=1.0, timeout_rate=0.0,
                      init_s=1, queue_s=1, scenario_duration_s=(60, 60), concurrency=3)  # fmt: skip
    job_id = sim.add_job(spec).job_id
    watch = WatchSection.model_validate({"jobs": [job_id]})
    async with RunloopClient(base_url=sim_url, api_key="k", limits=RequestLimits(max_per_s=None)) as client:
        cycle = PollCycle(watch=watch, client=client, tracker=JobTracker(store), clock=sim.clock,
                          health=ApiHealth(60_000), on_notifications=lambda: None)  # fmt: skip
        _admin(
            postgres_database,
            "CREATE FUNCTION starve() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'too many clients' USING ERRCODE = 'too_many_connections'; END $$",
            "CREATE TRIGGER starve BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION starve()",
        )
        assert (await cycle.run()).failed == 1  # found initializing; nothing recorded
        assert isinstance(sim.clock, ManualClock)
        sim.clock.advance(10 * 60_000)  # meanwhile every scenario failed
        assert (await cycle.run()).failed == 1
        _admin(postgres_database, "DROP TRIGGER starve ON jobs")
        told = [event.kind for event in (await cycle.run()).events]
    assert told[0] == "job.discovered" and told.count("scenario.failed") == 3, told
    stored = [stored.event.kind for stored in await store.events(job_id=job_id)]
    assert stored.count("scenario.failed") == 3

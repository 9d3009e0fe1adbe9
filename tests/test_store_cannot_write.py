"""A store that cannot write, end to end through the service and its status server, on both backends: SQLite with a
full disk (`PRAGMA max_page_count`, as in test_disk_full.py); PostgreSQL raising a real `disk_full` (SQLSTATE 53100)
from a trigger on the tables a poll and a send write; PostgreSQL made read-only (`default_transaction_read_only`,
SQLSTATE 25006 on every write). Polls that cannot be recorded are held and made again,
a send whose "sent" cannot be recorded is held (nothing new is sent meanwhile), `/readyz` answers 503 with the
store-health reason, one log line a minute — and everything resumes by itself, nothing lost, nothing sent twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import aiohttp
import psycopg
import pytest

from tests.conftest import ServerFactory
from tests.fakes.webhook import WebhookReceiver
from tests.lifecycle import SECRET
from tests.running_services import INTERVAL_MS, Running, database_url, step, write_config
from tests.test_disk_full import UNLIMITED_PAGES, fill_up
from tests.test_pg_write_errors import reconnected, set_read_only
from watcher.core.clock import ManualClock
from watcher.pipeline.sample import sample_notification
from watcher.simulator import SimJobSpec, Simulator
from watcher.store.postgres import PostgresStore
from watcher.store.sqlite import SQLiteStore

# The tables a poll's commit, the probe write and a send's record write; the lease tables stay writable (on a full
# disk an update that fits its page still succeeds), so a replica keeps its jobs and its polls reach the commit.
DATA_TABLES = ("jobs", "events", "state_rows", "outbox", "deliveries")


class Breakage(Protocol):
    """How a test makes the store unable to write, and able again."""

    state: str  # the config's `state:` section
    says: str  # what the error says, in /readyz and the log
    leases_writable: bool  # whether a replica still renews its leases (and so polls, then fails to commit)

    async def fail(self, running: Running) -> None: ...

    async def heal(self, running: Running) -> None: ...


class FullSQLite:
    """The SQLite file capped at its size and filled up to the last byte."""

    state = "path: ./state.db"
    says = "database or disk is full"
    leases_writable = True  # no leases: one process polls every job

    async def fail(self, running: Running) -> None:
        assert isinstance(running.service.store, SQLiteStore)
        await fill_up(running.service.store)

    async def heal(self, running: Running) -> None:
        assert isinstance(running.service.store, SQLiteStore)
        await running.service.store.limit_pages(UNLIMITED_PAGES)


class FullPostgres:
    """Every insert or update of a data table raises the server's disk_full, as an extension of a full disk does."""

    says = "No space left on device (SQLSTATE 53100)"
    leases_writable = True

    def __init__(self, database: str) -> None:
        self.url = database_url(database)
        self.state = f"url: '{self.url}'"

    async def fail(self, running: Running) -> None:
        raising = "RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'"
        self._run(
            f"CREATE OR REPLACE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {raising}; END $$",
            *(f"CREATE TRIGGER disk_full BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION disk_full()"
              for table in DATA_TABLES),
        )  # fmt: skip

    async def heal(self, running: Running) -> None:
        self._run(*(f"DROP TRIGGER disk_full ON {table}" for table in DATA_TABLES))

    def _run(self, *statements: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement.encode())


class ReadOnlyPostgres:
    """The database made read-only (`default_transaction_read_only`), its sessions ended so that every new one is:
    as a primary demoted to a standby. The store reads until its pool has reconnected; from then on every write
    (the lease renewal first) fails with SQLSTATE 25006."""

    says = "read-only transaction (SQLSTATE 25006)"
    leases_writable = False

    def __init__(self, database: str) -> None:
        self.database = database
        self.state = f"url: '{database_url(database)}'"

    async def fail(self, running: Running) -> None:
        set_read_only(self.database, True)
        assert isinstance(running.service.store, PostgresStore)
        await reconnected(running.service.store)

    async def heal(self, running: Running) -> None:
        set_read_only(self.database, False)
        assert isinstance(running.service.store, PostgresStore)
        await reconnected(running.service.store)


@pytest.fixture(params=["sqlite-full", "postgres-disk-full", "postgres-read-only"])
def breakage(request: pytest.FixtureRequest) -> Breakage:
    if request.param == "sqlite-full":
        return FullSQLite()
    database = request.getfixturevalue("postgres_database")
    return FullPostgres(database) if request.param == "postgres-disk-full" else ReadOnlyPostgres(database)


class World:
    """The simulator, a webhook receiver, and a service on the store `breakage` breaks."""

    def __init__(self, sim: Simulator, api: str, clock: ManualClock, folder: Path, breakage: Breakage) -> None:
        self.sim, self.api, self.clock, self.folder, self.breakage = sim, api, clock, folder, breakage
        self.hook = WebhookReceiver(SECRET)
        self.hook_url = ""

    @contextlib.asynccontextmanager
    async def service(self, jobs: list[str]) -> AsyncIterator[Running]:
        """A service watching `jobs`, one send at a time and its record before the next (a record window of one:
        the sends a broken store holds are then exactly known); stopped in order at the end."""
        config = write_config(
            self.folder, api=self.api, hook=self.hook_url, state=self.breakage.state, jobs=jobs, concurrency=1
        )
        async with aiohttp.ClientSession() as http:
            running = await Running.start(config, self.clock, http, record_window=1)
            try:
                yield running
            finally:
                await running.stop()


@pytest.fixture
async def world(
    sim: Simulator,
    sim_url: str,
    clock: ManualClock,
    tmp_path: Path,
    *,
    breakage: Breakage,
    aiohttp_server: ServerFactory,
) -> World:
    world = World(sim, sim_url, clock, tmp_path, breakage)
    world.hook_url = str((await aiohttp_server(world.hook.app())).make_url("/hook"))
    return world


def _cannot_write(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "cannot write" in r.getMessage()]


async def _unready(running: Running, says: str) -> None:
    body = await running.json("/readyz", 503)
    assert body["ready"] is False and "the state store cannot write" in body["reason"], body
    assert says in body["reason"], body
    assert await running.json("/healthz") == {"status": "ok"}


@pytest.mark.slow
async def test_polls_that_cannot_be_recorded_are_held_then_made_again(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    sim, clock, hook, breakage = world.sim, world.clock, world.hook, world.breakage
    jobs = [sim.add_job(SimJobSpec(name=f"nightly-{i}", init_s=600)).job_id for i in range(3)]
    async with world.service(jobs) as running:
        await breakage.fail(running)
        report = await running.service.poll_once()
        assert report.events == [] and not running.service.store_health.writable
        # Polled, but nothing of it could be recorded — or, when not even the leases renew, nothing polled at all.
        assert report.failed == (3 if breakage.leases_writable else 0)
        await _unready(running, breakage.says)
        requests = sim.requests_served
        for _ in range(5):
            await step(clock, [running])
        assert sim.requests_served == requests  # nothing polled while nothing can be recorded
        assert len(_cannot_write(caplog)) == 1  # once a minute, not per poll
        assert not [r for r in caplog.records if r.exc_info]  # no tracebacks

        await breakage.heal(running)
        clock.advance(INTERVAL_MS)
        report = await running.service.poll_once()  # resumes by itself: the probe write succeeds first
        assert sorted(e.job_name for e in report.events if e.kind == "job.discovered") == sorted(
            f"nightly-{i}" for i in range(3)
        )
        assert (await running.json("/readyz"))["ready"] is True
        assert await running.service.store.get_state("benchwatch", "write_probe") is None  # the probe left nothing
        await running.service.drain()
    assert any("writes again" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    told = Counter(d.payload["events"][0]["job_id"] for d in hook.deliveries)
    assert told == Counter(jobs)  # each job's discovery told once


@pytest.mark.slow
async def test_a_send_whose_record_cannot_be_written_is_held_and_never_sent_twice(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    clock, hook, breakage = world.clock, world.hook, world.breakage
    job = world.sim.add_job(SimJobSpec(name="nightly", init_s=600)).job_id
    async with world.service([job]) as running:
        service = running.service
        await service.poll_once()
        await service.drain()  # the job's discovery: told, recorded
        base = sample_notification("hook", clock.now_ms())
        await service.store.commit(notifications=[base.model_copy(update={"id": f"nt_{i}"}) for i in range(5)])
        hook.gate = asyncio.Event()  # the first send is held in flight while the store stops writing
        sending = asyncio.create_task(service.drain())
        await hook.wait_for(2)
        await breakage.fail(running)
        hook.gate.set()
        await asyncio.wait_for(sending, timeout=10)
        assert len(hook.requests) == 2 and service.worker.unrecorded == 1  # sent, its record held: nothing new
        await _unready(running, breakage.says)
        for _ in range(5):
            clock.advance(5_000)
            assert await service.drain() == 0
        assert len(hook.requests) == 2 and len(_cannot_write(caplog)) == 1
        clock.advance(60_000)
        await service.drain()
        assert len(_cannot_write(caplog)) == 2  # once a minute

        await breakage.heal(running)  # it resumes by itself, the held record first
        await service.drain()
        await service.poll_once()
        assert (await running.json("/readyz"))["ready"] is True
        assert [item.status for item in await service.store.outbox_items()] == ["sent"] * 6
    ids = Counter(d.webhook_id for d in hook.deliveries)
    assert len(ids) == 6 and set(ids.values()) == {1}  # all told, none twice

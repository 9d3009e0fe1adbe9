"""The store, on both backends (the conformance suite): created and migrated on first use, atomic per poll,
exactly once across interruptions. SQLite's group commit and file checks are tested on SQLite alone."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import Backend
from tests.recording import record, to_snapshot
from tests.waiting import until
from watcher.core.clock import ManualClock
from watcher.core.events import Event
from watcher.core.records import DeliveryAttempt, DeliveryOutcome, OutboxStatus, StateRow
from watcher.core.snapshot import Snapshot
from watcher.diff.jobs import diff
from watcher.pipeline.sample import sample_notification
from watcher.pipeline.tracker import JobTracker
from watcher.simulator import SimJobSpec, Simulator
from watcher.store import pgschema
from watcher.store.errors import StoreError
from watcher.store.postgres import PostgresStore
from watcher.store.sqlite import SCHEMA_VERSION, SQLiteStore


class Interrupted(Exception):
    """Stands for the process dying at a step of a commit."""


def _timeline() -> list[Snapshot]:
    clock = ManualClock()
    sim = Simulator(seed=2, clock=clock)
    plans = [
        sim.add_job(SimJobSpec(name="a", n_scenarios=8, fail_rate=0.3, n_attempts=1)),
        sim.add_job(SimJobSpec(name="b", n_scenarios=6, outcome="cancelled", end_after_s=500, fail_rate=0.2)),
    ]
    lines = record(sim, clock, plans, steps=50, step_ms=40_000)
    return [to_snapshot(line) for line in lines]


async def _stored(backend: Backend, name: str) -> list[Event]:
    async with backend.store(name) as store:
        return [stored.event for stored in await store.events(limit=100_000)]


def _schema_version(backend: Backend) -> tuple[int, ...] | None:
    """The version row, read with the backend's own driver; None when the table is missing."""
    location = backend.location()
    if backend.kind == "sqlite":
        with sqlite3.connect(location) as db:
            return db.execute("SELECT version FROM schema_version").fetchone()  # type: ignore[no-any-return]
    with psycopg.connect(location) as conn:
        return conn.execute(b"SELECT version FROM schema_version").fetchone()


async def test_created_on_first_use_and_reopened_with_its_state(backend: Backend) -> None:
    timeline = _timeline()
    async with backend.store() as store:
        tracker = JobTracker(store)
        told = [event for snapshot in timeline[:40] for event in (await tracker.observe(snapshot)).events]
    async with backend.store() as store:
        memories = await store.load_memories()
        assert set(memories) == {s.job.id for s in timeline}
        tracker = JobTracker(store)
        told += [event for snapshot in timeline[40:] for event in (await tracker.observe(snapshot)).events]
        assert [stored.event for stored in await store.events(limit=10_000)] == told
    expected = SCHEMA_VERSION if backend.kind == "sqlite" else pgschema.SCHEMA_VERSION
    assert _schema_version(backend) == (expected,)


async def test_an_sqlite_file_is_created_with_its_folders(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "state.db"
    async with SQLiteStore(path):
        pass
    assert path.exists()


async def test_events_filter_by_job_and_position(backend: Backend) -> None:
    async with backend.store() as store:
        tracker = JobTracker(store)
        for snapshot in _timeline():
            await tracker.observe(snapshot)
        every = await store.events(limit=10_000)
        job_id = every[0].event.job_id
        mine = await store.events(job_id=job_id, limit=10_000)
        assert mine and all(stored.event.job_id == job_id for stored in mine)
        later = await store.events(since_seq=every[4].seq, limit=3)
        assert [s.seq for s in later] == [s.seq for s in every[5:8]]


async def test_recording_an_event_twice_keeps_one(backend: Backend) -> None:
    snapshot = _timeline()[0]
    async with backend.store() as store:
        result = diff(None, snapshot)
        await store.commit(memory=result.memory, events=result.events)
        first = await store.events()
        await store.commit(memory=result.memory, events=result.events)
        assert len(first) == 1 and await store.events() == first  # the same row, not rewritten


async def test_a_range_of_state_rows_is_read_by_key_compared_byte_by_byte(backend: Backend) -> None:
    log = [StateRow("log", f"{version:016d}", f"v{version}") for version in (3, 1, 12, 2, 5)]
    cased = [StateRow("cased", key, key) for key in ("B", "a", "Z", "b")]
    async with backend.store() as store:
        await store.commit(state_rows=[*log, *cased, StateRow("other", f"{2:016d}", "elsewhere")])
        rows = await store.load_state_range("log", f"{2:016d}", f"{5:016d}")
        assert rows == [StateRow("log", f"{v:016d}", f"v{v}") for v in (2, 3, 5)]  # by key, this namespace only
        assert await store.load_state_range("log", f"{6:016d}", f"{11:016d}") == []
        # bytewise, whatever the database's collation: every capital before every small letter
        assert [row.key for row in await store.load_state_range("cased", "A", "Z")] == ["B", "Z"]


async def _run_with_interruption(backend: Backend, name: str, timeline: list[Snapshot], fail_at: int) -> list[str]:
    """Observe the timeline, interrupting the `fail_at`-th commit step; then restart and observe it all again.
    Returns the steps taken before the restart."""
    steps: list[str] = []

    def hook(step: str) -> None:
        steps.append(step)
        if len(steps) == fail_at:
            raise Interrupted(step)

    interrupted_at = -1
    async with backend.store(name, step_hook=hook) as store:
        tracker = JobTracker(store)
        for index, snapshot in enumerate(timeline):
            try:
                await tracker.observe(snapshot)
            except Interrupted:
                interrupted_at = index
                break
    # A restart: a new process, a new tracker; it polls again from where the store says it was.
    async with backend.store(name) as store:
        tracker = JobTracker(store)
        for snapshot in timeline[max(interrupted_at, 0) :] if interrupted_at >= 0 else []:
            await tracker.observe(snapshot)
    return steps


@pytest.mark.slow
async def test_an_interruption_at_any_step_loses_nothing_and_repeats_nothing(backend: Backend) -> None:
    timeline = _timeline()
    async with backend.store("clean") as store:
        tracker = JobTracker(store)
        for snapshot in timeline:
            await tracker.observe(snapshot)
    expected = [(e.job_id, e.kind, e.model_dump(exclude={"id", "at_ms"})) for e in await _stored(backend, "clean")]
    steps = await _run_with_interruption(backend, "count", timeline, fail_at=0)
    assert len(steps) > 100
    for fail_at in _fail_points(backend, steps):
        name = f"crash-{fail_at}"
        await _run_with_interruption(backend, name, timeline, fail_at)
        got = [(e.job_id, e.kind, e.model_dump(exclude={"id", "at_ms"})) for e in await _stored(backend, name)]
        assert got == expected, f"interrupted at commit step {fail_at}"
        if backend.kind == "sqlite":  # thousands of crash files: keep one at a time
            os.unlink(backend.location(name))


def _fail_points(backend: Backend, steps: list[str]) -> list[int]:
    """The first and the last step of each kind (begin, memory, event, state row, notification, before and after
    commit), and on SQLite also every 9th step between: each interruption replays the whole timeline, so every
    step (~450) cost 26 s of the suite's 4 minutes; the server's runs cost ten times more, so only the kinds."""
    firsts: dict[str, list[int]] = {}
    for number, step in enumerate(steps, start=1):
        firsts.setdefault(step.partition(":")[0], []).append(number)
    assert set(firsts) >= {"begin", "memory", "event", "before_commit", "after_commit"}
    points = {n for numbers in firsts.values() for n in (numbers[0], numbers[-1])}
    if backend.kind == "sqlite":
        points |= set(range(1, len(steps) + 1, 9))
    return sorted(points)


async def test_writes_queued_together_share_a_commit_and_a_failing_one_fails_alone(tmp_path: Path) -> None:
    discovered = diff(None, _timeline()[0]).events[0]
    events = [discovered.model_copy(update={"id": f"ev_{n}"}) for n in range(3)]  # three distinct facts
    steps: list[str] = []
    entered, release = threading.Event(), threading.Event()

    def hook(step: str) -> None:  # on the store's thread
        steps.append(step)
        if step == "begin" and not entered.is_set():
            entered.set()
            release.wait(10)  # hold the first transaction open while two more writes queue behind it
        if step == "state:0" and steps.count("state:0") == 2:
            raise Interrupted(step)

    def write(key: str, event: Event) -> asyncio.Task[None]:
        return asyncio.create_task(store.commit(events=[event], state_rows=[StateRow("test", key, "{}")]))

    async with SQLiteStore(tmp_path / "s.db", step_hook=hook) as store:
        first = write("a", events[0])
        await until(entered.is_set)
        second, third = write("b", events[1]), write("c", events[2])
        await until(lambda: store._writes.qsize() == 2)  # both wait for the thread
        release.set()
        await first
        with pytest.raises(Interrupted):
            await second
        await third
        assert [row.key for row in await store.load_state_rows("test")] == ["a", "c"]
        assert [stored.event.id for stored in await store.events()] == [events[0].id, events[2].id]
    # The second and third writes were one transaction: one BEGIN, one COMMIT.
    alone = ["begin", "event:0", "state:0", "before_commit", "after_commit"]
    together = ["begin", "event:0", "state:0", "event:0", "state:0", "before_commit", "after_commit"]
    assert steps == alone + together


async def test_attempts_recorded_together_share_a_transaction_and_a_failing_one_fails_alone(
    postgres_database: str,
) -> None:
    # PostgreSQL's group commit (SQLite's writes share a transaction through its thread: the test above).
    steps: list[str] = []
    url = f"postgresql://postgres@127.0.0.1:5432/{postgres_database}"
    async with PostgresStore(url, step_hook=steps.append) as store:
        notes = [sample_notification("hook", 1_000).model_copy(update={"id": f"nt_{n}"}) for n in range(5)]
        await store.commit(notifications=notes)
        assert len(await store.due_notifications(2_000)) == 5  # claimed by this replica: its records may land
        steps.clear()

        def record(note_id: str, error: str | None = None) -> Coroutine[Any, Any, None]:
            attempt = DeliveryAttempt(
                notification_id=note_id, notifier="hook", attempt=1, started_ms=1_000, finished_ms=1_001,
                outcome=DeliveryOutcome.SENT if error is None else DeliveryOutcome.RETRY, reason=None, error=error,
            )  # fmt: skip
            status = OutboxStatus.SENT if error is None else OutboxStatus.PENDING
            return store.record_delivery(attempt, status=status, next_attempt_ms=0)

        await asyncio.gather(record("nt_0"), record("nt_1"))
        assert steps == ["delivery:attempt"]  # recorded at the same moment: one transaction for both
        # A record the database cannot take (its text does not encode) fails alone; the others of its batch land.
        outcomes = await asyncio.gather(
            record("nt_2"), record("nt_3", error="HTTP 502: \udcff"), record("nt_4"), return_exceptions=True
        )
        assert outcomes[0] is None and outcomes[2] is None and isinstance(outcomes[1], UnicodeEncodeError)
        sent = {item.notification.id for item in await store.outbox_items(status="sent")}
        assert sent == {"nt_0", "nt_1", "nt_2", "nt_4"}
        assert [attempt.attempt for attempt in await store.deliveries("nt_4")] == [1]
        assert await store.deliveries("nt_3") == []


async def test_a_newer_schema_is_refused(backend: Backend) -> None:
    async with backend.store():
        pass
    if backend.kind == "sqlite":
        with sqlite3.connect(backend.location()) as db:
            db.execute("UPDATE schema_version SET version = 99")
    else:
        with psycopg.connect(backend.location()) as conn:
            conn.execute(b"UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="schema v99 is newer"):
        await backend.store().open()


async def test_replicas_starting_together_migrate_once(postgres_database: str, tmp_path: Path) -> None:
    # PostgreSQL only: an SQLite file is one process's (a second one is refused).
    backend = Backend("postgres", tmp_path, postgres_database)
    stores = [backend.store() for _ in range(4)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        assert _schema_version(backend) == (pgschema.SCHEMA_VERSION,)
        await stores[0].commit(events=[diff(None, _timeline()[0]).events[0]])
        assert [len(await store.events()) for store in stores] == [1, 1, 1, 1]
    finally:
        await asyncio.gather(*(store.close() for store in stores))


async def test_a_server_that_is_not_there_is_a_one_line_error_without_the_password() -> None:
    store = PostgresStore("postgresql://bw:hunter2@127.0.0.1:1/db", connect_timeout_s=1)
    assert "hunter2" not in repr(store)
    with pytest.raises(StoreError) as caught:
        await store.open()
    message = str(caught.value)
    assert message.startswith("postgresql://bw:***@127.0.0.1:1/db: cannot use as a benchwatch database")
    assert "hunter2" not in message and "\n" not in message


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, not sqlite\n" * 100)
    with pytest.raises(StoreError, match="cannot use as a benchwatch database"):
        await SQLiteStore(path).open()


@pytest.mark.slow
async def test_a_second_process_on_one_sqlite_file_is_refused_at_once_but_read_commands_open_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    config = tmp_path / "benchwatch.yaml"
    config.write_text(
        "runloop: {base_url: 'http://127.0.0.1:9', api_key: k}\nwatch: {jobs: [bmj_1]}\nstate: {path: ./state.db}\n"
    )
    async with SQLiteStore(path, exclusive=True):
        with pytest.raises(StoreError, match="another benchwatch process is using this state file") as caught:
            await SQLiteStore(path, exclusive=True).open()  # a second open file description: refused as a process is
        assert "state: {url: postgresql://" in str(caught.value)
        second = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "watcher", "run", "--config", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(second.communicate(), timeout=30)
        assert second.returncode == 2
        (line,) = err.decode().splitlines()
        assert line.startswith(f"benchwatch: error: {path}: another benchwatch process is using this state file")
        async with SQLiteStore(path) as reader:  # what `deliveries list` opens: no lock asked, none refused
            assert await reader.outbox_counts() == {}
    async with SQLiteStore(path, exclusive=True):  # closed: free again
        pass

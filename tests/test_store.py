"""The SQLite store: created and migrated on first use, atomic per poll, exactly once across interruptions."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.recording import record, to_snapshot
from watcher.app.tracker import JobTracker
from watcher.core.clock import ManualClock
from watcher.core.events import Event
from watcher.core.records import StateRow
from watcher.core.snapshot import Snapshot
from watcher.diff.jobs import diff
from watcher.simulator import SimJobSpec, Simulator
from watcher.store.errors import StoreError
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


async def _stored(path: Path) -> list[Event]:
    async with SQLiteStore(path) as store:
        return [stored.event for stored in await store.events(limit=100_000)]


async def test_created_on_first_use_and_reopened_with_its_state(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "state.db"
    timeline = _timeline()
    async with SQLiteStore(path) as store:
        tracker = JobTracker(store)
        told = [event for snapshot in timeline[:40] for event in (await tracker.observe(snapshot)).events]
    assert path.exists()
    async with SQLiteStore(path) as store:
        memories = await store.load_memories()
        assert set(memories) == {s.job.id for s in timeline}
        tracker = JobTracker(store)
        told += [event for snapshot in timeline[40:] for event in (await tracker.observe(snapshot)).events]
        assert [stored.event for stored in await store.events(limit=10_000)] == told
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)


async def test_events_filter_by_job_and_position(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "s.db") as store:
        tracker = JobTracker(store)
        for snapshot in _timeline():
            await tracker.observe(snapshot)
        every = await store.events(limit=10_000)
        job_id = every[0].event.job_id
        mine = await store.events(job_id=job_id, limit=10_000)
        assert mine and all(stored.event.job_id == job_id for stored in mine)
        later = await store.events(since_seq=every[4].seq, limit=3)
        assert [s.seq for s in later] == [s.seq for s in every[5:8]]


async def test_recording_an_event_twice_keeps_one(tmp_path: Path) -> None:
    snapshot = _timeline()[0]
    async with SQLiteStore(tmp_path / "s.db") as store:
        result = diff(None, snapshot)
        assert await store.commit(memory=result.memory, events=result.events) == 1
        assert await store.commit(memory=result.memory, events=result.events) == 0
        assert len(await store.events()) == 1


async def _run_with_interruption(path: Path, timeline: list[Snapshot], fail_at: int) -> int:
    """Observe the timeline, interrupting the `fail_at`-th commit step; then restart and observe it all again."""
    steps = 0

    def hook(step: str) -> None:
        nonlocal steps
        steps += 1
        if steps == fail_at:
            raise Interrupted(step)

    interrupted_at = -1
    async with SQLiteStore(path, step_hook=hook) as store:
        tracker = JobTracker(store)
        for index, snapshot in enumerate(timeline):
            try:
                await tracker.observe(snapshot)
            except Interrupted:
                interrupted_at = index
                break
    # A restart: a new process, a new tracker; it polls again from where the store says it was.
    async with SQLiteStore(path) as store:
        tracker = JobTracker(store)
        for snapshot in timeline[max(interrupted_at, 0) :] if interrupted_at >= 0 else []:
            await tracker.observe(snapshot)
    return steps


async def test_an_interruption_at_any_step_loses_nothing_and_repeats_nothing(ram_path: Path) -> None:
    tmp_path = ram_path  # ~50,000 commits: in RAM, they check the same logic without an fsync each
    timeline = _timeline()
    async with SQLiteStore(tmp_path / "clean.db") as store:
        tracker = JobTracker(store)
        for snapshot in timeline:
            await tracker.observe(snapshot)
    expected = [(e.job_id, e.kind, e.model_dump(exclude={"id", "at_ms"})) for e in await _stored(tmp_path / "clean.db")]
    total_steps = await _run_with_interruption(tmp_path / "count.db", timeline, fail_at=0)
    assert total_steps > 100
    for fail_at in range(1, total_steps + 1, 3 if total_steps > 400 else 1):
        path = tmp_path / f"crash-{fail_at}.db"
        await _run_with_interruption(path, timeline, fail_at)
        got = [(e.job_id, e.kind, e.model_dump(exclude={"id", "at_ms"})) for e in await _stored(path)]
        assert got == expected, f"interrupted at commit step {fail_at}"
        path.unlink()


async def _until(condition: Callable[[], bool], deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_writes_queued_together_share_a_commit_and_a_failing_one_fails_alone(tmp_path: Path) -> None:
    events = [diff(None, snapshot).events[0] for snapshot in _timeline()[:3]]
    steps: list[str] = []
    entered, release = threading.Event(), threading.Event()

    def hook(step: str) -> None:  # on the store's thread
        steps.append(step)
        if step == "begin" and not entered.is_set():
            entered.set()
            release.wait(10)  # hold the first transaction open while two more writes queue behind it
        if step == "state:0" and steps.count("state:0") == 2:
            raise Interrupted(step)

    def write(key: str, event: Event) -> asyncio.Task[int]:
        return asyncio.create_task(store.commit(events=[event], state_rows=[StateRow("test", key, "{}")]))

    async with SQLiteStore(tmp_path / "s.db", step_hook=hook) as store:
        first = write("a", events[0])
        await _until(entered.is_set)
        second, third = write("b", events[1]), write("c", events[2])
        await _until(lambda: store._writes.qsize() == 2)  # both wait for the thread
        release.set()
        assert await first == 1
        with pytest.raises(Interrupted):
            await second
        assert await third == 1
        assert [row.key for row in await store.load_state_rows("test")] == ["a", "c"]
        assert [stored.event.id for stored in await store.events()] == [events[0].id, events[2].id]
    # The second and third writes were one transaction: one BEGIN, one COMMIT.
    alone = ["begin", "event:0", "state:0", "before_commit", "after_commit"]
    together = ["begin", "event:0", "state:0", "event:0", "state:0", "before_commit", "after_commit"]
    assert steps == alone + together


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    async with SQLiteStore(path):
        pass
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="schema v99 is newer"):
        await SQLiteStore(path).open()


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, not sqlite\n" * 100)
    with pytest.raises(StoreError, match="cannot use as a benchwatch database"):
        await SQLiteStore(path).open()

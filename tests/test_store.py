"""The SQLite store: created and migrated on first use, atomic per poll, exactly once across interruptions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.recording import record, to_snapshot
from watcher.clock import ManualClock
from watcher.events import Event
from watcher.simulator import SimJobSpec, Simulator
from watcher.snapshot import Snapshot
from watcher.store import SQLiteStore
from watcher.store.sqlite import SCHEMA_VERSION, StoreError
from watcher.tracker import JobTracker


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
        from watcher.diff import diff

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


async def test_an_interruption_at_any_step_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
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

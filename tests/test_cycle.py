"""Poll cycles against the simulator on a clock the test moves: discovery, resting jobs, stalls, vanished jobs,
and the watcher telling when it is blind."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FakeSleep, ThrowawayPostgres
from tests.loopprobe import CountingThreadsafe
from tests.test_disk_full import UNLIMITED_PAGES, fill_up
from watcher.api.client import RequestLimits, RetryPolicy, RunloopClient
from watcher.api.health import ApiHealth
from watcher.api.poll import fetch_snapshot
from watcher.app.config import WatchSection
from watcher.app.cycle import SLOT_JOBS, PollCycle
from watcher.core.clock import ManualClock
from watcher.core.events import Event, WatcherApiUnreachable
from watcher.core.models import BenchmarkJobView
from watcher.core.snapshot import Snapshot
from watcher.diff.jobs import diff
from watcher.diff.timers import stall
from watcher.pipeline.tracker import JobTracker
from watcher.simulator import Faults, RawJson, SimAgent, SimJobSpec, Simulator
from watcher.store.errors import StoreWriteError
from watcher.store.postgres import PostgresStore
from watcher.store.sqlite import SQLiteStore

MINUTE = 60_000


class Rig:
    """A poll cycle wired to the simulator, a real SQLite store and a moved clock."""

    def __init__(self, sim: Simulator, clock: ManualClock, cycle: PollCycle, tracker: JobTracker) -> None:
        self.sim, self.clock, self.cycle, self.tracker = sim, clock, cycle, tracker
        self.events: list[Event] = []

    async def run(self, advance_ms: int = 0) -> list[Event]:
        self.clock.advance(advance_ms)
        report = await self.cycle.run()
        self.events.extend(report.events)
        return report.events

    def kinds(self, job_name: str | None = None) -> list[str]:
        return [e.kind for e in self.events if job_name is None or e.job_name == job_name]

    def requests_for(self, job_id: str) -> int:
        return sum(1 for line in self.sim.request_log if job_id in line)


@pytest.fixture
async def rig_factory(
    sim: Simulator, sim_url: str, clock: ManualClock, fake_sleep: FakeSleep, tmp_path: Path
) -> AsyncIterator[Any]:
    stores: list[SQLiteStore] = []
    clients: list[RunloopClient] = []

    async def make(cycle_sleep: Any = None, slot_jobs: int = SLOT_JOBS, store: Any = None, **watch: Any) -> Rig:
        if store is None:
            store = SQLiteStore(tmp_path / f"state-{len(stores)}.db")
            await store.open()
            stores.append(store)
        client = RunloopClient(
            base_url=sim_url, api_key="k", sleep=fake_sleep, clock=clock,
            retry=RetryPolicy(max_attempts=2), limits=RequestLimits(max_per_s=None),
        )  # fmt: skip
        clients.append(client)
        settings = WatchSection.model_validate({"stall_after": "10m", "api_unreachable_after": "5m", **watch})
        tracker = JobTracker(store)
        await tracker.load_memories()
        health = ApiHealth(settings.api_unreachable_after_ms)
        cycle = PollCycle(
            watch=settings, client=client, tracker=tracker, clock=clock, health=health, on_notifications=lambda: None,
            sleep=cycle_sleep or fake_sleep, slot_jobs=slot_jobs,
        )  # fmt: skip
        return Rig(sim, clock, cycle, tracker)

    yield make
    for client in clients:
        await client.close()
    for store in stores:
        await store.close()


async def test_discovery_follows_the_glob_and_the_age_cutoff(
    sim: Simulator, clock: ManualClock, rig_factory: Any
) -> None:
    sim.add_job(SimJobSpec(name="nightly-old"))
    clock.advance(3 * 24 * 3_600_000)
    sim.add_job(SimJobSpec(name="weekly-new"))
    sim.add_job(SimJobSpec(name="nightly-new"))
    rig = await rig_factory(discover={"name": "nightly-*", "created_within": "1d"})
    await rig.run()
    assert {e.job_name for e in rig.events if e.kind == "job.discovered"} == {"nightly-new"}
    listing = [line for line in sim.request_log if line.startswith("GET /v1/benchmark_jobs?")]
    assert len(listing) == 1 and "limit=1000" in listing[0]  # the first pass reads far back
    sim.add_job(SimJobSpec(name="nightly-newer"))
    before = len(sim.request_log)
    await rig.run(MINUTE)
    new_requests = list(sim.request_log)[before:]
    assert [line for line in new_requests if "benchmark_jobs?" in line] == [
        "GET /v1/benchmark_jobs?limit=5&include_total_count=false"
    ]  # later passes: one small page, stopped at the first known job
    assert {e.job_name for e in rig.events if e.kind == "job.discovered"} == {"nightly-new", "nightly-newer"}
    burst = {f"nightly-burst-{i}" for i in range(7)}  # more new jobs than a later page holds: read on
    for name in sorted(burst):
        sim.add_job(SimJobSpec(name=name))
    before = len(sim.request_log)
    await rig.run(MINUTE)
    pages = [line for line in list(sim.request_log)[before:] if "benchmark_jobs?" in line]
    assert len(pages) >= 2 and all("limit=5&" in page for page in pages)  # (and on past the jobs of the same ms)
    assert {e.job_name for e in rig.events if e.kind == "job.discovered"} >= burst


async def test_later_passes_stop_at_the_newest_job_listed_before_though_none_of_the_newest_match(
    sim: Simulator, clock: ManualClock, rig_factory: Any
) -> None:
    """Jobs of other teams, newer than every job the pattern matches, were read again at every cycle, 5 a page,
    down to the first known job (or the age cutoff): 3 pages a cycle here, hundreds where other teams are busy."""
    sim.add_job(SimJobSpec(name="nightly-1"))
    for index in range(12):
        clock.advance(1_000)
        sim.add_job(SimJobSpec(name=f"other-{index}"))
    rig = await rig_factory(discover={"name": "nightly-*", "created_within": "1d"})
    await rig.run()

    def pages_of_next_pass_after(before: int) -> list[str]:
        return [line for line in list(sim.request_log)[before:] if line.startswith("GET /v1/benchmark_jobs?")]

    before = len(sim.request_log)
    await rig.run(MINUTE)
    assert pages_of_next_pass_after(before) == ["GET /v1/benchmark_jobs?limit=5&include_total_count=false"]
    clock.advance(1_000)
    newer = sim.add_job(SimJobSpec(name="nightly-2"))  # behind a newer job that does not match: still found
    for index in range(6):
        clock.advance(1_000)
        sim.add_job(SimJobSpec(name=f"other-new-{index}"))
    before = len(sim.request_log)
    await rig.run(MINUTE)
    assert len(pages_of_next_pass_after(before)) == 2
    assert newer.job_id in {e.job_id for e in rig.events if e.kind == "job.discovered"}
    before = len(sim.request_log)
    await rig.run(MINUTE)
    assert len(pages_of_next_pass_after(before)) == 1


async def test_a_pass_that_stops_early_closes_its_listing_on_the_spot(
    sim: Simulator, clock: ManualClock, rig_factory: Any
) -> None:
    """A listing abandoned mid-page was closed by the collector: two async generators whose finalizers reach the
    loop through `call_soon_threadsafe` and run as tasks of their own — two wake-ups a second at rest."""
    for index in range(12):
        clock.advance(1_000)
        sim.add_job(SimJobSpec(name=f"other-{index}"))
    rig = await rig_factory(discover={"name": "nightly-*", "created_within": "1d"})
    await rig.run()
    before = len(sim.request_log)
    with CountingThreadsafe(asyncio.get_running_loop()) as hops:
        await rig.run(MINUTE)
    assert [line for line in list(sim.request_log)[before:] if "benchmark_jobs?" in line] == [
        "GET /v1/benchmark_jobs?limit=5&include_total_count=false"
    ]  # the page held more jobs than the pass read
    assert hops.calls == 0


async def test_a_malformed_listed_job_behind_newer_ones_that_do_not_match_is_read_again_until_it_reads(
    sim: Simulator, clock: ManualClock, rig_factory: Any
) -> None:
    bad = sim.add_job(SimJobSpec(name="nightly-bad"))
    sim.tamper(bad.job_id, {"create_time_ms": None})
    for index in range(3):
        clock.advance(1_000)
        sim.add_job(SimJobSpec(name=f"other-{index}"))
    rig = await rig_factory(discover={"name": "nightly-*", "created_within": "1d"})
    await rig.run()
    await rig.run(MINUTE)
    assert "job.discovered" not in rig.kinds()
    sim.tamper(bad.job_id, {})  # repaired: found on the next pass
    await rig.run(MINUTE)
    assert [e.job_id for e in rig.events if e.kind == "job.discovered"] == [bad.job_id]


async def test_a_finished_job_gets_one_confirming_poll_then_rests(sim: Simulator, rig_factory: Any) -> None:
    plan = sim.add_job(SimJobSpec(name="short", n_scenarios=2, agents=[{"name": "a"}]))  # type: ignore[list-item]
    rig = await rig_factory(jobs=[plan.job_id], scenario_runs=False)
    assert plan.end_ms is not None
    await rig.run()
    rig.clock.set(plan.end_ms)
    await rig.run()
    assert "job.finished" in rig.kinds("short")
    polls = rig.requests_for(plan.job_id)
    await rig.run(MINUTE)  # the confirming poll
    await rig.run(MINUTE)
    await rig.run(MINUTE)
    assert rig.requests_for(plan.job_id) == polls + 1


async def test_a_known_job_whose_bytes_did_not_change_is_not_parsed_again(sim: Simulator, rig_factory: Any) -> None:
    plan = sim.add_job(SimJobSpec(name="steady", n_scenarios=6))
    rig = await rig_factory(jobs=[plan.job_id])
    await rig.run()
    await rig.run(MINUTE)  # the fingerprint now covers the job and its followed runs' pages
    assert await rig.cycle._fetch(plan.job_id) is None  # the clock stood still: the same bytes
    rig.clock.advance(MINUTE)
    moved = await rig.cycle._fetch(plan.job_id)
    assert moved is not None and moved.scenario_runs  # new bytes: parsed, with the runs' scenario runs
    memory = rig.tracker.memory(plan.job_id)
    assert memory is not None and moved.fingerprint != memory.fingerprint


async def test_a_resting_job_is_kept_by_id_only_and_its_memory_comes_back_from_the_store(
    sim: Simulator, rig_factory: Any
) -> None:
    plan = sim.add_job(SimJobSpec(name="short", n_scenarios=2, agents=[{"name": "a"}]))  # type: ignore[list-item]
    rig = await rig_factory(jobs=[plan.job_id])
    assert plan.end_ms is not None
    await rig.run()
    assert rig.tracker.memory(plan.job_id) is not None
    rig.clock.set(plan.end_ms)
    await rig.run()
    await rig.run(MINUTE)  # the confirming poll: now it rests
    assert rig.tracker.knows(plan.job_id) and rig.tracker.live() == []
    assert rig.tracker.memory(plan.job_id) is None  # not cached: thousands of finished jobs cost no memory
    snapshot = await fetch_snapshot(rig.cycle.client, plan.job_id, rig.clock, scenario_runs=True)
    again = await rig.tracker.observe(snapshot)
    assert again.events == () and again.memory is not None and again.memory.finished  # read back from the store


async def test_a_stalled_job_is_told_once(sim: Simulator, rig_factory: Any) -> None:
    plan = sim.add_job(SimJobSpec(name="stuck", stall_after_s=120, n_scenarios=20))
    rig = await rig_factory(jobs=[plan.job_id], stall_after="10m")
    assert plan.stop_ms is not None
    rig.clock.set(plan.stop_ms + 1000)
    await rig.run()
    assert "job.stalled" not in rig.kinds()
    for _ in range(6):
        await rig.run(3 * MINUTE)
    assert rig.kinds("stuck").count("job.stalled") == 1
    stalled = next(e for e in rig.events if e.kind == "job.stalled")
    assert stalled.stalled_for_ms >= 10 * MINUTE  # type: ignore[union-attr]


def test_any_change_re_arms_the_stall() -> None:
    job = BenchmarkJobView.model_validate({"id": "j", "name": "n", "state": "running", "create_time_ms": 0})
    memory = diff(None, Snapshot(job=job, at_ms=0)).memory
    memory = diff(memory, Snapshot(job=job, at_ms=11 * MINUTE)).memory
    first = stall(memory, 11 * MINUTE, 10 * MINUTE)
    assert first is not None
    _, memory = first
    assert stall(memory, 30 * MINUTE, 10 * MINUTE) is None  # once per quiet spell
    moved = job.model_copy(update={"state": "paused"})
    memory = diff(memory, Snapshot(job=moved, at_ms=31 * MINUTE)).memory
    back = diff(memory, Snapshot(job=job, at_ms=32 * MINUTE)).memory
    assert not back.stalled
    assert stall(back, 50 * MINUTE, 10 * MINUTE) is None  # not seen since 32 min: nothing to call a stall
    seen = diff(back, Snapshot(job=job, at_ms=50 * MINUTE)).memory
    assert stall(seen, 50 * MINUTE, 10 * MINUTE) is not None


async def test_an_outage_is_not_a_stall(sim: Simulator, rig_factory: Any) -> None:
    """Quiet time is what successful polls showed: the minutes of a 25-minute outage do not count."""
    plan = sim.add_job(SimJobSpec(name="stuck", stall_after_s=120, n_scenarios=20))
    rig = await rig_factory(jobs=[plan.job_id], stall_after="10m", api_unreachable_after="5m")
    assert plan.stop_ms is not None
    rig.clock.set(plan.stop_ms + 1000)
    await rig.run()  # its last change seen
    await rig.run(4 * MINUTE)  # 4 quiet minutes, seen
    sim.set_faults(Faults(rate_503=1.0))
    for _ in range(5):
        await rig.run(5 * MINUTE)
    assert "watcher.api_unreachable" in rig.kinds() and "job.stalled" not in rig.kinds()
    sim.set_faults(Faults())
    await rig.run(MINUTE)  # seen again after the outage: still only 4 quiet minutes
    await rig.run(5 * MINUTE)  # 9
    assert "job.stalled" not in rig.kinds()
    await rig.run(2 * MINUTE)  # 11
    assert rig.kinds("stuck").count("job.stalled") == 1
    stalled = next(e for e in rig.events if e.kind == "job.stalled")
    assert 10 * MINUTE <= stalled.stalled_for_ms <= 12 * MINUTE  # type: ignore[union-attr]


async def test_an_outage_told_while_the_store_cannot_write_is_recorded_once_it_can(
    sim: Simulator, rig_factory: Any
) -> None:
    """The API's health tells an outage once: an `api_unreachable` whose commit failed was gone for good."""
    plan = sim.add_job(SimJobSpec(name="nightly", init_s=3600))
    rig = await rig_factory(jobs=[plan.job_id], api_unreachable_after="5m")
    await rig.run()
    sim.set_faults(Faults(rate_503=1.0))
    await rig.run(MINUTE)  # the outage begins
    store = rig.tracker.store
    assert isinstance(store, SQLiteStore)
    await fill_up(store)
    for size in (2000, 300, 40, 0):  # and the events' own pages
        with contextlib.suppress(StoreWriteError):
            for index in range(10_000):
                filler = WatcherApiUnreachable(
                    id=f"fill-{size}-{index}", job_id="", job_name="", at_ms=0, since_ms=0, failures=0,
                    last_error="x" * size,
                )  # fmt: skip
                await store.commit(events=[filler])
    await rig.run(5 * MINUTE)  # told now, as the disk is full
    assert "watcher.api_unreachable" not in rig.kinds() and not rig.cycle.store_health.writable
    await store.limit_pages(UNLIMITED_PAGES)
    sim.set_faults(Faults())
    await rig.run(MINUTE)  # the store writes again: the outage is recorded, then its end
    assert rig.kinds() == ["job.discovered", "watcher.api_unreachable", "watcher.api_recovered"]
    recorded = [stored.event for stored in await store.events() if not stored.event.id.startswith("fill-")]
    assert [event.kind for event in recorded] == ["job.discovered", "watcher.api_unreachable", "watcher.api_recovered"]


@pytest.mark.slow
async def test_a_stall_found_while_the_database_is_away_is_told_once_it_is_back(
    sim: Simulator, rig_factory: Any, throwaway_postgres: ThrowawayPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    """A stall is found after the polls, by the clock; its commit failing with the database away raised out of the
    cycle (APScheduler logged the traceback), where a poll's failing commit is told and polled again."""
    caplog.set_level(logging.INFO)
    plan = sim.add_job(SimJobSpec(name="stuck", stall_after_s=120, n_scenarios=20))
    assert plan.stop_ms is not None
    store = PostgresStore(throwaway_postgres.url)
    await store.open()
    try:
        rig = await rig_factory(jobs=[plan.job_id], stall_after="10m", store=store)
        rig.clock.set(plan.stop_ms + 1000)
        await rig.run()  # its last change seen
        throwaway_postgres.stop()
        await rig.run(11 * MINUTE)  # quiet for 11 minutes, polled unchanged: a stall, which cannot be recorded
        assert "job.stalled" not in rig.kinds()
        assert any("not recorded" in r.getMessage() for r in caplog.records)
        throwaway_postgres.start()
        await rig.run(MINUTE)
        assert rig.kinds("stuck").count("job.stalled") == 1
        assert [stored.event.kind for stored in await store.events(job_id=plan.job_id)][-1] == "job.stalled"
    finally:
        await store.close()


async def test_one_malformed_job_costs_that_job_only(
    sim: Simulator, rig_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A null name, a null create_time_ms or a wrong type on one listed job: the others are discovered, the bad
    one is reported once with its id, and discovery goes on (also on later pages)."""
    good = [sim.add_job(SimJobSpec(name=f"nightly-{i}")) for i in range(5)]
    sim.tamper(good[1].job_id, {"name": None})
    sim.tamper(good[2].job_id, {"create_time_ms": None})
    sim.tamper(good[3].job_id, {"in_progress_runs": "lots"})
    rig = await rig_factory(discover={"name": "nightly-*"})
    await rig.run()
    await rig.run(MINUTE)
    await rig.run(MINUTE)
    discovered = {e.job_id for e in rig.events if e.kind == "job.discovered"}
    assert discovered == {good[0].job_id, good[4].job_id}
    skipped = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(skipped) == 3 and all(any(p.job_id in line for line in skipped) for p in good[1:4])
    assert "watcher.api_unreachable" not in rig.kinds()
    sim.tamper(good[1].job_id, {})  # repaired: found on the next pass
    await rig.run(MINUTE)
    assert good[1].job_id in {e.job_id for e in rig.events if e.kind == "job.discovered"}


async def test_a_malformed_watched_job_is_reported_once_and_is_not_an_outage(
    sim: Simulator, rig_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    bad, fine = sim.add_job(SimJobSpec(name="bad")), sim.add_job(SimJobSpec(name="fine"))
    sim.tamper(bad.job_id, {"state": ["running"]})
    rig = await rig_factory(jobs=[bad.job_id, fine.job_id], api_unreachable_after="5m")
    for _ in range(4):
        await rig.run(3 * MINUTE)
    assert [e.job_name for e in rig.events if e.kind == "job.discovered"] == ["fine"]
    assert "watcher.api_unreachable" not in rig.kinds()
    assert sum(bad.job_id in r.getMessage() and "malformed" in r.getMessage() for r in caplog.records) == 1


async def test_a_malformed_scenario_run_page_costs_only_that_runs_scenario_events_of_that_poll(
    sim: Simulator, rig_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    spec = SimJobSpec(
        name="two-agents", n_scenarios=12, concurrency=2, fail_rate=0.5, timeout_rate=0.0,
        scenario_duration_s=(60.0, 90.0), agents=[SimAgent(name="good"), SimAgent(name="bad")],
    )  # fmt: skip
    plan = sim.add_job(spec)
    good_run, bad_run = (run.run_id for run in plan.runs)
    sim.tamper_run(bad_run, {"scenario_id": None})  # valid JSON, but no scenario run without a scenario id
    rig = await rig_factory(jobs=[plan.job_id])
    failed = 0
    for _ in range(5):  # five minutes of the runs, with scenarios failing on both
        report = await rig.cycle.run()
        rig.events.extend(report.events)
        failed += report.failed
        rig.clock.advance(MINUTE)
    scenario_runs = {getattr(e, "benchmark_run_id", None) for e in rig.events if e.kind.startswith("scenario.")}
    assert failed == 0 and scenario_runs == {good_run}  # the job's polls succeed; the bad run's scenarios wait
    assert {"job.discovered", "job.state_changed", "job.progress"} <= set(rig.kinds())
    told = [r.getMessage() for r in caplog.records if bad_run in r.getMessage()]
    assert len(told) == 1 and "malformed" in told[0] and plan.job_id in told[0]  # once, not every poll
    assert "job.finished" not in rig.kinds()  # mid-run: the bad run's failures so far are unread
    waited = await fetch_snapshot(rig.cycle.client, plan.job_id, rig.clock, scenario_runs=True)  # `wait`'s poll
    assert set(waited.scenario_runs) == {good_run}
    sim.tamper_run(bad_run, {})  # reads again: its failures so far are told at the next poll
    await rig.run(MINUTE)
    late = [e.id for e in rig.events if e.kind == "scenario.failed" and getattr(e, "benchmark_run_id", None) == bad_run]
    assert late and len(late) == len(set(late))  # each once
    assert plan.end_ms is not None
    rig.clock.set(plan.end_ms)
    await rig.run(MINUTE)
    assert "job.finished" in rig.kinds()


UNREADABLE = {
    "invalid UTF-8": {"notes": RawJson(b'"caf\xe9"')},
    "a lone surrogate": {"notes": "\ud83d"},
    "bad bytes in a field never read": {"job_spec": {"extra": RawJson(b'"\xff\xfe"')}},
    "an unknown field nested 1,000 deep": {"notes": RawJson(b"[" * 1000 + b"]" * 1000)},
}


@pytest.mark.parametrize("fields", UNREADABLE.values(), ids=UNREADABLE.keys())
async def test_one_job_of_unreadable_bytes_costs_that_job_only(
    sim: Simulator, rig_factory: Any, caplog: pytest.LogCaptureFixture, fields: dict[str, Any]
) -> None:
    """Bytes no JSON reader takes, in one job, made the whole list page fail every cycle (every job unseen) and
    its own GET an API failure retried six times. Now the page is read item by item, and the GET is that job's
    malformed data: reported once, not retried, not an outage."""
    good = [sim.add_job(SimJobSpec(name=f"nightly-{i}")) for i in range(3)]
    bad = sim.add_job(SimJobSpec(name="nightly-bad"))  # the newest: first on the list
    sim.tamper(bad.job_id, fields)
    rig = await rig_factory(discover={"name": "nightly-*"}, api_unreachable_after="1m")
    for _ in range(3):
        await rig.run(MINUTE)
    assert {e.job_id for e in rig.events if e.kind == "job.discovered"} == {plan.job_id for plan in good}
    skipped = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(skipped) == 1 and bad.job_id in skipped[0]
    caplog.clear()
    watched = await rig_factory(jobs=[bad.job_id, good[0].job_id], api_unreachable_after="1m")
    requests = len(sim.request_log)
    for _ in range(3):
        await watched.run(MINUTE)
    assert [e.job_name for e in watched.events if e.kind == "job.discovered"] == ["nightly-0"]
    assert "watcher.api_unreachable" not in watched.kinds()
    assert sum(bad.job_id in line for line in list(sim.request_log)[requests:]) == 3  # once a cycle: no retries
    messages = [r.getMessage() for r in caplog.records]
    assert sum(bad.job_id in line and "malformed" in line for line in messages) == 1
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_slow_job_holds_neither_the_cycle_nor_the_other_jobs_and_its_poll_has_a_deadline(
    sim: Simulator, rig_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A job GET trickling at 20 bytes/s held a cycle — every job's next poll — for each of its retries' 30 s. Now
    a cycle waits for its polls only so long; a slow poll goes on alone, and `watch.poll_timeout` ends it."""
    slow, fast = sim.add_job(SimJobSpec(name="slow")), sim.add_job(SimJobSpec(name="fast"))
    rig = await rig_factory(jobs=[slow.job_id, fast.job_id], poll_timeout="1s")
    await rig.run()  # both known
    sim.slow(slow.job_id, 20)
    started = time.monotonic()
    first = await asyncio.wait_for(rig.cycle.run(wait_s=0.2), timeout=5)
    second = await asyncio.wait_for(rig.cycle.run(wait_s=0.2), timeout=5)
    assert time.monotonic() - started < 0.9  # neither cycle waited for the slow job
    assert (first.polled, second.polled) == (1, 1)  # the fast job, each cycle; the slow one is still being read
    assert rig.requests_for(slow.job_id) == 2  # the first poll's GET only: never two polls of a job at once
    await rig.cycle.settle(5)  # waits for the slow poll: it ends at its deadline, not after the GET's 30 s
    assert not rig.cycle.polls_running() and time.monotonic() - started < 2
    third = await rig.cycle.run(wait_s=0.2)
    assert third.failed == 1 and third.api_errors[0].reason == "timeout"  # the slow poll, counted once it ended
    assert any("no answer within 1s (watch.poll_timeout)" in r.getMessage() for r in caplog.records)
    await rig.cycle.settle(0)  # the third cycle's poll of the slow job: cancelled, as a stop does


@pytest.mark.parametrize("hostile_id", ["..", "."])
async def test_a_job_whose_id_is_a_dot_segment_is_polled_by_that_id(
    sim: Simulator, rig_factory: Any, hostile_id: str
) -> None:
    """GET /v1/benchmark_jobs/.. is GET /v1/ once a URL resolves it: a 404 every poll, the job reported vanished."""
    plan = sim.add_job(SimJobSpec(name="nightly-dots"))
    sim.tamper(plan.job_id, {"id": hostile_id})
    rig = await rig_factory(discover={"name": "nightly-*"})
    for _ in range(4):
        await rig.run(MINUTE)
    assert rig.kinds().count("job.discovered") == 1 and "job.vanished" not in rig.kinds()
    assert rig.tracker.memory(hostile_id) is not None
    assert rig.requests_for("/v1/benchmark_jobs/" + hostile_id.replace(".", "%2E")) == 3  # its own GETs, answered


async def test_a_job_answering_404_twice_vanishes(tmp_path: Path, rig_factory: Any) -> None:
    rig = await rig_factory(jobs=["bmj_gone"])
    job = BenchmarkJobView.model_validate({"id": "bmj_gone", "name": "gone", "state": "running", "create_time_ms": 0})
    first = diff(None, Snapshot(job=job, at_ms=rig.clock.now_ms()))
    await rig.tracker.store.commit(memory=first.memory, events=first.events)
    await rig.tracker.load_memories()
    await rig.run(MINUTE)
    assert rig.kinds() == []
    await rig.run(MINUTE)
    assert rig.kinds() == ["job.vanished"]
    polls = rig.requests_for("bmj_gone")
    await rig.run(MINUTE)
    assert rig.requests_for("bmj_gone") == polls and rig.kinds() == ["job.vanished"]


async def test_a_404_is_warned_once_then_at_the_vanishing_never_every_cycle(
    tmp_path: Path, rig_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rig = await rig_factory(jobs=["bmj_gone", "bmj_never"])
    job = BenchmarkJobView.model_validate({"id": "bmj_gone", "name": "gone", "state": "running", "create_time_ms": 0})
    first = diff(None, Snapshot(job=job, at_ms=rig.clock.now_ms()))
    await rig.tracker.store.commit(memory=first.memory, events=first.events)
    await rig.tracker.load_memories()
    for _ in range(6):
        await rig.run(MINUTE)
    warned = [r.getMessage() for r in caplog.records if r.name == "benchwatch.poll" and r.levelno == logging.WARNING]
    assert sorted(warned) == [
        "configured job bmj_never does not exist (404); check watch.jobs (still asked each cycle)",
        "job bmj_gone (gone) answered 404 again: vanished, no longer polled",
        "job bmj_gone (gone) answered 404; if it does again, it has vanished",
    ]
    assert rig.requests_for("bmj_never") == 6 and rig.kinds() == ["job.vanished"]


async def test_the_watcher_says_when_it_is_blind_and_when_it_sees_again(sim: Simulator, rig_factory: Any) -> None:
    plan = sim.add_job(SimJobSpec(name="j"))
    rig = await rig_factory(jobs=[plan.job_id], api_unreachable_after="5m")
    await rig.run()
    sim.set_faults(Faults(rate_503=1.0))
    for _ in range(4):
        await rig.run(MINUTE)
    assert "watcher.api_unreachable" not in rig.kinds()
    await rig.run(2 * MINUTE)
    await rig.run(MINUTE)
    assert rig.kinds().count("watcher.api_unreachable") == 1
    outage = next(e for e in rig.events if e.kind == "watcher.api_unreachable")
    assert outage.job_id == "" and "HTTP 503" in outage.last_error  # type: ignore[union-attr]
    sim.set_faults(Faults())
    await rig.run(MINUTE)
    await rig.run(MINUTE)
    assert rig.kinds().count("watcher.api_recovered") == 1
    recovered = next(e for e in rig.events if e.kind == "watcher.api_recovered")
    assert recovered.down_for_ms >= 5 * MINUTE  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "slots",
    [
        (1, [0, 500, 1000, 1500], [500, 500, 500]),  # one job a slot: each at its own offset
        (2, [0, 0, 1000, 1000], [1000]),  # slots of two: the event loop wakes twice a cycle, not four times
        (4, [0, 0, 0, 0], []),  # no more jobs than a slot holds: all at once
    ],
)
async def test_spread_polls_start_in_slots_evenly_over_the_cycle_each_job_at_the_same_offset_every_cycle(
    sim: Simulator, clock: ManualClock, rig_factory: Any, slots: tuple[int, list[int], list[int]]
) -> None:
    slot_jobs, offsets, sleeps = slots  # jobs a slot, each job's offset from the cycle's start, the waits
    plans = [sim.add_job(SimJobSpec(name=f"spread-{i}", n_scenarios=3)) for i in range(4)]
    slept: list[int] = []

    async def sleep(seconds: float) -> None:
        # Let the polls started so far finish at the current time, then move the clock to the next slot.
        deadline = time.monotonic() + 10
        while any(t.get_name().startswith("poll ") and not t.done() for t in asyncio.all_tasks()):
            assert time.monotonic() < deadline, "polls did not finish"
            await asyncio.sleep(0)
        slept.append(round(seconds * 1000))
        clock.advance(slept[-1])

    rig = await rig_factory(
        cycle_sleep=sleep, slot_jobs=slot_jobs, jobs=[plan.job_id for plan in plans], scenario_runs=False
    )
    order = sorted(plan.job_id for plan in plans)
    polled_at: list[list[int]] = []
    for _ in range(2):
        started_ms = clock.now_ms()
        await rig.cycle.run(spread_s=2.0)
        polled_at.append([rig.tracker.memory(job_id).last_seen_ms - started_ms for job_id in order])  # type: ignore[union-attr]
        clock.advance(3000 - sum(sleeps))  # the rest of a 3-s interval
    assert polled_at == [offsets, offsets]
    assert slept == sleeps * 2
    assert all(rig.requests_for(job_id) == 2 for job_id in order)  # once per cycle each


async def test_event_lines_carry_the_job_id_and_progress_is_debug_only(
    sim: Simulator, rig_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    plan = sim.add_job(SimJobSpec(name="logged", n_scenarios=6, scenario_duration_s=(60, 120), fail_rate=0.0))
    rig = await rig_factory(jobs=[plan.job_id], scenario_runs=True)
    with caplog.at_level(logging.DEBUG, logger="benchwatch.events"):
        for _ in range(8):
            await rig.run(advance_ms=MINUTE)
    records = [record for record in caplog.records if record.name == "benchwatch.events"]
    kinds = {record.levelno: {getattr(r, "event_kind", None) for r in records if r.levelno == record.levelno}
             for record in records}  # fmt: skip
    assert kinds[logging.DEBUG] == {"job.progress"}  # every poll of every job: not for a person
    assert "job.progress" not in kinds[logging.INFO] and "job.discovered" in kinds[logging.INFO]
    assert all(getattr(record, "job_id", None) == plan.job_id for record in records)


async def test_progress_that_goes_back_says_why(sim: Simulator, rig_factory: Any) -> None:
    """A failed scenario retried is running again: n_done goes 1 → 0, and the event says it was a retry."""
    agents = [SimAgent(name="a")]
    spec = SimJobSpec(name="retry", agents=agents, n_scenarios=1, n_attempts=1, fail_rate=1.0, timeout_rate=0.0)
    plan = sim.add_job(spec)
    first, second = plan.runs[0].scenarios[0].attempts[:2]
    rig = await rig_factory(jobs=[plan.job_id])
    rig.clock.set(first.start_ms + 100)
    await rig.run()
    rig.clock.set(first.end_ms + 100)
    await rig.run()
    rig.clock.set(second.start_ms + 100)
    await rig.run()
    progress = [e for e in rig.events if e.kind == "job.progress"]
    assert [(e.n_done, e.regressed_because) for e in progress] == [(1, None), (0, "retry")]  # type: ignore[union-attr]


async def test_absurd_counters_from_the_api_are_clamped_with_one_warning(
    sim: Simulator, rig_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    plan = sim.add_job(SimJobSpec(name="liar", n_scenarios=2, agents=[{"name": "a"}]))  # type: ignore[list-item]
    assert plan.end_ms is not None
    rig = await rig_factory(jobs=[plan.job_id])
    rig.clock.set(plan.end_ms - 1500)  # the run's outcome is in, the job is not finished yet
    await rig.run()
    outcome = sim.job_view(plan.job_id)["benchmark_outcomes"][0]
    bad = {**outcome, "n_completed": -5, "n_failed": 10**15}
    sim.tamper(plan.job_id, {"benchmark_outcomes": [bad], "state": "running"})
    await rig.run(500)
    sim.tamper(plan.job_id, {"benchmark_outcomes": [bad], "state": "running", "name": "liar-renamed"})
    await rig.run(500)
    memory = rig.tracker.memory(plan.job_id)
    assert memory is not None and memory.counters.n_completed == 0 and memory.counters.n_failed == 1_000_000
    warnings = [r.getMessage() for r in caplog.records if "out of range" in r.getMessage()]
    assert len(warnings) == 1 and "n_completed=-5" in warnings[0] and "clamped to 0..1000000" in warnings[0]


async def test_scores_outside_0_to_1_from_the_api_are_unknown_with_one_warning(
    sim: Simulator, rig_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    plan = sim.add_job(SimJobSpec(name="boaster", n_scenarios=2, agents=[{"name": "a"}]))  # type: ignore[list-item]
    assert plan.end_ms is not None
    rig = await rig_factory(jobs=[plan.job_id])
    rig.clock.set(plan.end_ms - 1500)
    await rig.run()
    outcome = sim.job_view(plan.job_id)["benchmark_outcomes"][0]
    scenarios = [{**scenario, "score": -3.0} for scenario in outcome["scenario_outcomes"]]
    bad = {**outcome, "average_score": 1e308, "scenario_outcomes": scenarios}
    sim.tamper(plan.job_id, {"benchmark_outcomes": [bad], "state": "running"})
    await rig.run(500)
    sim.tamper(plan.job_id, {"benchmark_outcomes": [bad], "state": "running", "name": "boaster-renamed"})
    await rig.run(500)
    scores = [e for e in rig.events if e.kind == "score.changed"]
    assert all(getattr(e, "new_score", None) is None for e in scores)  # never 1e308, never clamped to a perfect 1.0
    memory = rig.tracker.memory(plan.job_id)
    assert memory is not None and all(run.average_score is None for run in memory.runs.values())
    warnings = [r.getMessage() for r in caplog.records if "scores outside 0..1" in r.getMessage()]
    assert len(warnings) == 1 and "average_score=1e+308" in warnings[0]

"""Proof: three replicas on one PostgreSQL database under the simulator, one killed and one started mid-run, the
database restarted once — what arrives equals what one clean replica sends: nothing lost, nothing twice.

Replicas run in this process on a ManualClock (a poll cycle per replica per step), on a PostgreSQL cluster of the
test's own, so the server can be stopped and started under them. A kill leaves leases and claims to expire, as
`kill -9` does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from rules.engine import Router
from tests.conftest import FakeSleep, ServerFactory, ThrowawayPostgres
from tests.fakes.webhook import WebhookReceiver
from tests.lifecycle import SECRET, SPECS, Key
from tests.lifecycle import expected as _expected
from tests.lifecycle import keys_of as _keys
from tests.lifecycle import unique as _unique
from watcher.api.client import RequestLimits, RetryPolicy, RunloopClient
from watcher.api.health import ApiHealth
from watcher.app.config import Config, load_config
from watcher.app.cycle import PollCycle
from watcher.app.delivery import build_worker
from watcher.app.replicas import LeaseGate
from watcher.core.clock import ManualClock
from watcher.pipeline.tracker import JobTracker
from watcher.simulator import Simulator, create_app
from watcher.store.errors import StoreError
from watcher.store.postgres import PostgresStore

STEP_MS = 30_000  # the poll interval
TTL_MS = 60_000  # the lease TTL: failover within TTL + one interval


def _config(tmp_path: Path, hook: str) -> Config:
    path = tmp_path / "benchwatch.yaml"
    path.write_text(
        "watch: {discover: {name: 'e2e-*'}, poll_interval: 30s, stall_after: 1h}\n"
        f"notifiers:\n  hook: {{type: webhook, url: '{hook}', secret: '{SECRET}'}}\n"
        "rules:\n"
        "  - {name: finished, on: job.finished, notify: hook}\n"
        "  - {name: runs, on: run.finished, notify: hook}\n"
        "  - {name: failures, on: [scenario.failed, scenario.timed_out], notify: hook, group_by: [event.id]}\n"
    )
    return load_config(path, {}).config


class Replica:
    """One `benchwatch run` wired as the service wires it: leases gate the poll cycle, the timer claim gates
    the flush, the worker sends from the shared outbox."""

    def __init__(self, name: str, url: str, api: str, config: Config, clock: ManualClock) -> None:
        self.name, self.url, self.api, self.config, self.clock = name, url, api, config, clock

    async def start(self, session: aiohttp.ClientSession) -> Replica:
        self.store = PostgresStore(
            self.url, holder=self.name, lease_ttl_ms=TTL_MS, connect_timeout_s=1, caller_clock=True
        )
        await self.store.open()
        self.client = RunloopClient(
            base_url=self.api, api_key="e2e-key", clock=self.clock, sleep=FakeSleep(ManualClock()),
            retry=RetryPolicy(max_attempts=2), limits=RequestLimits(max_per_s=None),
        )  # fmt: skip
        router = Router(self.config.rules, self.config.silences)
        self.tracker = JobTracker(self.store, router=router, shared_rules=True)
        await self.tracker.load_memories()
        self.gate = LeaseGate(self.store, self.tracker, self.clock, timers_for_ms=TTL_MS * 2 // 3)
        self.cycle = PollCycle(
            watch=self.config.watch, client=self.client, tracker=self.tracker, clock=self.clock,
            health=ApiHealth(self.config.watch.api_unreachable_after_ms), on_notifications=lambda: None,
            gate=self.gate,
        )  # fmt: skip
        self.worker = build_worker(self.config, self.store, session, self.clock)
        return self

    async def step(self) -> None:
        """A poll cycle, the timer flush if its heartbeat holds the claim, the sends due."""
        await self.cycle.run()
        now_ms = self.clock.now_ms()
        with contextlib.suppress(StoreError):  # as the service's jobs do: the next tick tries again
            if self.gate.holds_timers():  # the cycle's heartbeat took or renewed the claim
                await self.tracker.flush_due(now_ms)
        with contextlib.suppress(StoreError):
            await self.worker.drain()

    async def stop(self, *, crash: bool = False) -> None:
        await self.client.close()
        await self.store.close(release=not crash)


async def test_replicas_share_the_work_survive_a_kill_and_a_database_restart_and_tell_everything_once(
    aiohttp_server: ServerFactory, throwaway_postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    clock = ManualClock()
    sim = Simulator(seed=17, clock=clock, api_key="e2e-key")
    for spec in SPECS:
        sim.add_job(spec)
    receiver = WebhookReceiver(SECRET)
    api = str((await aiohttp_server(create_app(sim))).make_url("")).rstrip("/")
    config = _config(tmp_path, str((await aiohttp_server(receiver.app())).make_url("/hook")))
    url = throwaway_postgres.url
    async with aiohttp.ClientSession() as session:
        live = [await Replica(name, url, api, config, clock).start(session) for name in ("r1", "r2", "r3")]
        steps = 0

        async def step_all() -> None:
            nonlocal steps
            clock.advance(STEP_MS)
            steps += 1
            await asyncio.gather(*(replica.step() for replica in live))

        for _ in range(3):
            await step_all()
        held = {replica.name: replica.gate.held for replica in live}
        assert set().union(*held.values()) == {plan.job_id for plan in sim.jobs()}  # every job has one holder
        assert sum(len(jobs) for jobs in held.values()) == len(sim.jobs())

        killed = next(replica for replica in live if replica.gate.held)  # 2 jobs, 3 replicas: one is idle
        live.remove(killed)  # kill -9: its leases are left to expire
        await killed.stop(crash=True)
        orphans, killed_ms = killed.gate.held, clock.now_ms()
        while clock.now_ms() < killed_ms + TTL_MS + STEP_MS:  # failover bound: lease TTL + one poll interval
            await step_all()
        holders = await live[0].store.lease_holders()
        assert orphans and all(holders.get(job_id) in {r.name for r in live} for job_id in orphans)

        live.append(await Replica("r1-restarted", url, api, config, clock).start(session))
        await step_all()

        throwaway_postgres.stop()
        await step_all()  # the database is away: nothing half-done, every replica unready
        assert [replica.store.reachable for replica in live] == [False, False, False]
        throwaway_postgres.start()
        await step_all()
        assert [replica.store.reachable for replica in live] == [True, True, True]

        for _ in range(200):
            if _all_finished(sim) and _received(receiver) == _expected(sim):
                break
            await step_all()
        expected = _expected(sim)
        for replica in live:
            await replica.stop()
    assert _received(receiver) == expected and sum(expected.values()) >= 6
    by_id = Counter(delivery.webhook_id for delivery in receiver.deliveries)
    assert max(by_id.values()) == 1  # no notification sent twice: no send was in flight at the kill
    assert steps < 120


def _all_finished(sim: Simulator) -> bool:
    return all(sim.job_view(plan.job_id)["state"] in ("completed", "failed") for plan in sim.jobs())


def _received(receiver: WebhookReceiver) -> Counter[Key]:
    return Counter(key for delivery in _unique(receiver) for key in _keys(delivery.payload))


pytestmark = [pytest.mark.filterwarnings("ignore:.*pool.*:RuntimeWarning"), pytest.mark.slow]  # replicas on PostgreSQL


@contextlib.asynccontextmanager
async def _one_of_two_died(
    aiohttp_server: ServerFactory, database: str, tmp_path: Path, *, seed: int, jobs: int, expire: bool = True
) -> AsyncIterator[tuple[Simulator, ManualClock, Replica, frozenset[str]]]:
    """Two replicas share `jobs` running jobs for three cycles; then one is killed (its leases left to expire) and
    the lease TTL passes (unless not `expire`). Yields the simulator, its clock, the replica alive and the jobs the
    dead one held."""
    clock = ManualClock()
    sim = Simulator(seed=seed, clock=clock, api_key="e2e-key")
    for index in range(jobs):
        sim.add_job(SPECS[0].model_copy(update={"name": f"e2e-{index}"}))
    api = str((await aiohttp_server(create_app(sim))).make_url("")).rstrip("/")
    config = _config(tmp_path, "http://127.0.0.1:9/hook")
    url = f"postgresql://postgres@127.0.0.1:5432/{database}"
    async with aiohttp.ClientSession() as session:
        dead, alive = [await Replica(name, url, api, config, clock).start(session) for name in ("dead", "alive")]
        for _ in range(3):
            clock.advance(1000)
            for replica in (dead, alive):
                await replica.cycle.run()
        orphans = dead.gate.held
        assert orphans and alive.gate.held and not orphans & alive.gate.held  # shared between the two
        await dead.stop(crash=True)
        if expire:
            clock.advance(TTL_MS)
        try:
            yield sim, clock, alive, orphans
        finally:
            await alive.stop()


def _polled(sim: Simulator) -> set[str]:
    """The jobs GET-ed in the simulator's request log."""
    return {line.rsplit("/", 1)[1] for line in sim.request_log if "/benchmark_jobs/" in line}


async def test_jobs_taken_over_are_polled_at_the_cycles_start_not_in_a_spread_slot(
    aiohttp_server: ServerFactory, postgres_database: str, tmp_path: Path
) -> None:
    async with _one_of_two_died(aiohttp_server, postgres_database, tmp_path, seed=5, jobs=6) as world:
        sim, clock, alive, orphans = world
        polled_before_first_slot: set[str] = set()

        async def sleep(seconds: float) -> None:  # the spread's first wait: the jobs taken over are polled meanwhile
            if not polled_before_first_slot:
                deadline = asyncio.get_running_loop().time() + 10
                while not orphans <= _polled(sim) and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)  # their GETs cross a real socket: no event to wait on
                polled_before_first_slot.update(_polled(sim) or {"nothing"})
            clock.advance(int(seconds * 1000))

        alive.cycle._sleep = sleep
        alive.cycle.slot_jobs = 1  # a slot per job: its own jobs wait for theirs, after the jobs taken over
        sim.request_log.clear()
        await alive.cycle.run(spread_s=30)
        assert orphans <= alive.gate.held  # all taken over by the one replica alive
        assert orphans <= polled_before_first_slot  # taken over: polled at once, ahead of the spread
        assert len(alive.gate.held - orphans) >= 2  # its own jobs keep their slots (so the spread did wait)


async def _polls_ended(cycle: PollCycle) -> None:
    await cycle.settle(10)  # waits on the polls' tasks (10 s at most, then cancels what is left)
    assert not cycle.polls_running()


async def test_a_heartbeat_that_takes_jobs_over_polls_them_without_waiting_for_a_cycle(
    aiohttp_server: ServerFactory, postgres_database: str, tmp_path: Path
) -> None:
    async with _one_of_two_died(aiohttp_server, postgres_database, tmp_path, seed=6, jobs=4) as world:
        sim, clock, alive, orphans = world
        assert alive.cycle.start_taken_over() == 0  # nothing taken over yet
        await alive.gate.heartbeat()  # the scheduler's heartbeat between two cycles
        assert alive.gate.has_fresh()
        sim.request_log.clear()
        assert alive.cycle.start_taken_over() == len(orphans)  # started, not awaited: the heartbeat goes on
        await _polls_ended(alive.cycle)
        assert _polled(sim) == orphans and not alive.gate.has_fresh()  # the orphans alone, at once
        clock.advance(1000)
        report = await alive.cycle.run()  # polls every job it holds, and counts the orphans' polls besides
        assert report.polled == len(alive.gate.held) + len(orphans)


async def test_jobs_a_heartbeat_takes_over_during_a_cycle_are_polled_then_not_after_it(
    aiohttp_server: ServerFactory, postgres_database: str, tmp_path: Path
) -> None:
    # Polled only between cycles, they waited for the cycle under way to end — with its polls spread over 0.9 of
    # the interval, most heartbeats come during one: up to a poll interval past the TTL before the first poll.
    async with _one_of_two_died(aiohttp_server, postgres_database, tmp_path, seed=8, jobs=6, expire=False) as world:
        sim, clock, alive, orphans = world
        polled_in_the_spread: set[str] = set()

        async def sleep(seconds: float) -> None:  # the spread's first wait: the TTL passes, a heartbeat comes
            if not polled_in_the_spread:
                clock.advance(TTL_MS)
                await alive.gate.heartbeat()  # takes the orphans over
                assert alive.cycle.start_taken_over() == len(orphans)
                await _polls_ended(alive.cycle)
                polled_in_the_spread.update(_polled(sim) or {"nothing"})
            clock.advance(int(seconds * 1000))

        alive.cycle._sleep = sleep
        alive.cycle.slot_jobs = 1  # a slot per job: the spread waits before its second job
        sim.request_log.clear()
        await alive.cycle.run(spread_s=30)  # its start renews its own leases: the orphans' have not expired yet
        assert orphans <= alive.gate.held and orphans <= polled_in_the_spread  # taken and polled mid-cycle


async def test_jobs_a_heartbeat_takes_over_are_kept_by_the_next_heartbeat_before_any_cycle(
    aiohttp_server: ServerFactory, postgres_database: str, tmp_path: Path
) -> None:
    # The heartbeat renewed only the jobs the last cycle wanted: a job taken over between two cycles was let go of by
    # the next heartbeat, before any cycle polled it — on 'many' 27 of a dead replica's 56 jobs bounced between the
    # survivors for over 15 s.
    async with _one_of_two_died(aiohttp_server, postgres_database, tmp_path, seed=7, jobs=4) as world:
        _, _, alive, orphans = world
        await alive.gate.heartbeat()  # takes the orphans over
        assert orphans <= alive.gate.held
        await alive.gate.heartbeat()  # the next one, no cycle in between
        assert orphans <= alive.gate.held and orphans <= set(await alive.store.lease_holders())

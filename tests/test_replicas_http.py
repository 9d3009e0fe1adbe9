"""The replicas' operations surface, through real HTTP requests: two services in this process (the `Service` seam,
on a manual clock) on one PostgreSQL database, each with its own status server — `/metrics` counts the leases each
holds and the sends it has claimed, `/api/jobs` names each job's holder (and the new one after a stop in order),
`/readyz` follows the database while `/healthz` says only that the process answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ServerFactory, ThrowawayPostgres
from tests.fakes.webhook import WebhookReceiver
from tests.lifecycle import SECRET
from tests.running_services import Running, database_url, step, write_config
from watcher.core.clock import ManualClock
from watcher.pipeline.sample import sample_notification
from watcher.simulator import SimJobSpec, Simulator

JOBS = 3
LEASES = "benchwatch_job_leases_held"
CLAIMS = "benchwatch_outbox_claims"


pytestmark = pytest.mark.slow  # replicas on PostgreSQL: databases made and dropped per test


class World:
    """The simulator with JOBS running jobs and a webhook receiver; `replicas(url)` starts two services on `url`."""

    def __init__(self, sim: Simulator, clock: ManualClock, api: str, hook: str, folder: Path) -> None:
        self.sim, self.clock, self.api, self.hook, self.folder = sim, clock, api, hook, folder
        self.receiver = WebhookReceiver(SECRET)
        self.jobs = [sim.add_job(SimJobSpec(name=f"nightly-{i}", init_s=600)).job_id for i in range(JOBS)]

    @contextlib.asynccontextmanager
    async def replicas(self, url: str) -> AsyncIterator[list[Running]]:
        state = f"url: '{url}', lease_ttl: 15s"
        async with aiohttp.ClientSession() as http, contextlib.AsyncExitStack() as stack:
            started = []
            for name in ("a", "b"):
                config = write_config(self.folder, api=self.api, hook=self.hook, state=state, jobs=self.jobs, name=name)
                replica = await Running.start(config, self.clock, http)
                stack.push_async_callback(replica.stop)
                started.append(replica)
            yield started


@pytest.fixture
async def world(
    sim: Simulator, clock: ManualClock, sim_url: str, aiohttp_server: ServerFactory, tmp_path: Path
) -> World:
    world = World(sim, clock, sim_url, "", tmp_path)
    world.hook = str((await aiohttp_server(world.receiver.app())).make_url("/hook"))
    return world


async def test_metrics_and_jobs_say_which_replica_holds_each_job_and_a_stop_hands_them_over(
    world: World, clock: ManualClock, postgres_database: str
) -> None:
    async with world.replicas(database_url(postgres_database)) as (a, b):
        for _ in range(3):  # the first replica takes every job; the second joins and gets its share
            await step(clock, [a, b])
        jobs = await a.json("/api/jobs")
        assert await b.json("/api/jobs") == jobs  # one database, one answer
        holders = Counter(job["holder"] for job in jobs)
        assert len(jobs) == JOBS and sorted(holders.values()) == [1, 2] and set(holders) == {a.holder, b.holder}
        assert await a.metric(LEASES) == holders[a.holder] and await b.metric(LEASES) == holders[b.holder]
        assert await a.metric(LEASES) + await b.metric(LEASES) == JOBS

        await a.stop()  # in order: its leases are free at once
        await step(clock, [b])
        assert {job["holder"] for job in await b.json("/api/jobs")} == {b.holder}
        assert await b.metric(LEASES) == JOBS
        with pytest.raises(aiohttp.ClientConnectionError):
            await a.get("/healthz")  # its status server closed with it


async def test_metrics_count_the_sends_a_replica_has_claimed_while_they_are_in_flight(
    world: World, clock: ManualClock, postgres_database: str
) -> None:
    async with world.replicas(database_url(postgres_database)) as (a, b):
        await step(clock, [a, b])
        await a.service.drain()  # what the polls put in the outbox (the jobs discovered) leaves first
        sent_before = len(world.receiver.requests)
        first = sample_notification("hook", clock.now_ms())
        await a.service.store.commit(notifications=[first.model_copy(update={"id": f"nt_{i}"}) for i in range(2)])
        world.receiver.gate = asyncio.Event()  # the receiver holds both requests until released
        sending = asyncio.create_task(a.service.drain())
        await world.receiver.wait_for(sent_before + 2)
        assert await a.metric(CLAIMS) == 2 and await b.metric(CLAIMS) == 0
        world.receiver.gate.set()
        await asyncio.wait_for(sending, timeout=5)
        assert await a.metric(CLAIMS) == 0 and await a.metric("benchwatch_outbox_pending") == 0
    ids = Counter(delivery.webhook_id for delivery in world.receiver.deliveries)
    assert ids["nt_0"] == ids["nt_1"] == 1 and all(d.verified for d in world.receiver.deliveries)


async def test_readyz_follows_the_database_while_healthz_stays_up(
    world: World, clock: ManualClock, throwaway_postgres: ThrowawayPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    async with world.replicas(throwaway_postgres.url) as replicas:
        await step(clock, replicas)
        for replica in replicas:
            assert (await replica.json("/readyz"))["ready"] is True

        throwaway_postgres.stop()
        await step(clock, replicas)  # the first round trip that fails makes a replica unready
        for replica in replicas:
            assert await replica.json("/readyz", 503) == {"ready": False, "reason": "the state store is unreachable"}
            assert await replica.json("/healthz") == {"status": "ok"}  # the process answers: no restart wanted
        caplog.clear()
        for _ in range(3):  # scrapes while the store is away: served (stale gauges), said once, no traceback
            assert (await replicas[0].get("/metrics"))[0] == 200
        said = [r for r in caplog.records if "refreshing metrics" in r.getMessage()]
        assert len(said) == 1 and said[0].exc_info is None

        throwaway_postgres.start()
        await step(clock, replicas)
        for replica in replicas:
            assert (await replica.json("/readyz"))["ready"] is True

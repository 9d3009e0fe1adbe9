"""The client against the simulator with faults: retries happen and stop, Retry-After holds, typed errors."""

from __future__ import annotations

import logging
import socket

import pytest

from tests.conftest import FakeSleep
from watcher.api.client import RequestLimits, RetryPolicy, RunloopClient, Timeouts
from watcher.api.errors import AuthError, ClientRequestError, MalformedResponseError, NotFoundError, TransientApiError
from watcher.core.clock import ManualClock
from watcher.core.failures import Reason, parse_retry_after
from watcher.simulator import Faults, SimJobSpec, Simulator

SECRET = "rl_api_key_TOP_SECRET_123"


def _client(url: str, sleep: FakeSleep, **kwargs: object) -> RunloopClient:
    limits = RequestLimits(max_concurrent=8, max_per_s=None)  # pacing is tested on its own
    return RunloopClient(base_url=url, api_key=SECRET, sleep=sleep, clock=sleep.clock, limits=limits, **kwargs)  # type: ignore[arg-type]


def _heal_after(sim: Simulator, n_sleeps: int) -> object:
    def heal(slept: int) -> None:
        if slept >= n_sleeps:
            sim.set_faults(Faults())

    return heal


async def test_get_job_returns_the_typed_view(sim: Simulator, sim_url: str, fake_sleep: FakeSleep) -> None:
    plan = sim.add_job(SimJobSpec(name="nightly"))
    async with _client(sim_url, fake_sleep) as client:
        job = await client.get_job(plan.job_id)
    assert (job.id, job.name, job.state) == (plan.job_id, "nightly", "initializing")
    assert fake_sleep.delays == []


async def test_paging_returns_every_job_exactly_once(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep, clock: ManualClock
) -> None:
    for _ in range(45):
        sim.add_job(SimJobSpec(n_scenarios=1))
        clock.advance(1000)
    async with _client(sim_url, fake_sleep) as client:
        ids = [job.id async for job in client.iter_jobs(page_size=7)]
    assert len(ids) == 45 and len(set(ids)) == 45
    assert ids == [plan.job_id for plan in sim.jobs()]  # newest first
    assert len(sim.request_log) == 7  # ceil(45 / 7) pages, no extra request


async def test_a_job_list_page_read_again_unchanged_is_not_parsed_again(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep, clock: ManualClock
) -> None:
    """Discovery reads the list's first page at every cycle: the same bytes give the same jobs without a parse,
    and a page that changed is read anew."""
    first = sim.add_job(SimJobSpec(n_scenarios=1))
    clock.advance(1000)
    async with _client(sim_url, fake_sleep) as client:
        before = [job async for job in client.iter_listed(page_size=5)]
        again = [job async for job in client.iter_listed(page_size=5)]
        assert [job.id for job in again] == [first.job_id]
        assert again[0] is before[0]  # the page's bytes were the same: its jobs were not read again
        second = sim.add_job(SimJobSpec(n_scenarios=1))
        after = [job async for job in client.iter_listed(page_size=5)]
    assert [job.id for job in after] == [second.job_id, first.job_id]
    assert after[1] is not before[0]


async def test_scenario_run_paging(sim: Simulator, sim_url: str, fake_sleep: FakeSleep, clock: ManualClock) -> None:
    plan = sim.add_job(SimJobSpec(n_scenarios=30, concurrency=30, agents=[{"name": "a"}]))  # type: ignore[list-item]
    clock.set(plan.running_ms + 1000)
    async with _client(sim_url, fake_sleep) as client:
        runs = [run async for run in client.iter_scenario_runs(plan.runs[0].run_id, page_size=4)]
    assert len({run.id for run in runs}) == 30
    assert {run.scenario_id for run in runs} == set(plan.scenario_ids)


async def test_retry_after_is_honoured(sim: Simulator, sim_url: str, fake_sleep: FakeSleep) -> None:
    plan = sim.add_job()
    sim.set_faults(Faults(rate_429=1.0, retry_after_s=7))
    fake_sleep.on_sleep = _heal_after(sim, 2)  # type: ignore[assignment]
    async with _client(sim_url, fake_sleep) as client:
        job = await client.get_job(plan.job_id)
    assert job.id == plan.job_id
    assert fake_sleep.delays == [7.0, 7.0]
    assert len(sim.request_log) == 3


async def test_server_errors_are_retried_with_capped_backoff_then_raised(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep
) -> None:
    plan = sim.add_job()
    sim.set_faults(Faults(rate_503=0.5, rate_500=0.5))
    policy = RetryPolicy(max_attempts=5, initial_backoff_s=1, max_backoff_s=4)
    async with _client(sim_url, fake_sleep, retry=policy) as client:
        with pytest.raises(TransientApiError) as caught:
            await client.get_job(plan.job_id)
    assert caught.value.reason == Reason.SERVER_ERROR and caught.value.status in (500, 503)
    assert len(sim.request_log) == 5
    assert len(fake_sleep.delays) == 4 and all(0 <= d <= 4 for d in fake_sleep.delays)


async def test_total_wait_is_bounded(sim: Simulator, sim_url: str, fake_sleep: FakeSleep) -> None:
    plan = sim.add_job()
    sim.set_faults(Faults(rate_429=1.0, retry_after_s=50))
    policy = RetryPolicy(max_attempts=10, max_total_wait_s=120)
    async with _client(sim_url, fake_sleep, retry=policy) as client:
        with pytest.raises(TransientApiError) as caught:
            await client.get_job(plan.job_id)
    assert caught.value.reason == Reason.RATE_LIMITED
    assert fake_sleep.delays == [50.0, 50.0]  # a third wait would pass the 120 s budget


async def test_retry_after_beyond_the_cap_is_clamped(sim: Simulator, sim_url: str, fake_sleep: FakeSleep) -> None:
    plan = sim.add_job()
    sim.set_faults(Faults(rate_429=1.0, retry_after_s=3600))
    fake_sleep.on_sleep = _heal_after(sim, 1)  # type: ignore[assignment]
    async with _client(sim_url, fake_sleep, retry=RetryPolicy(max_retry_after_s=60)) as client:
        await client.get_job(plan.job_id)
    assert fake_sleep.delays == [60.0]


async def test_truncated_and_malformed_bodies_are_retried(sim: Simulator, sim_url: str, fake_sleep: FakeSleep) -> None:
    plan = sim.add_job()
    sim.set_faults(Faults(rate_truncated=0.5, rate_malformed=0.5))
    fake_sleep.on_sleep = _heal_after(sim, 3)  # type: ignore[assignment]
    async with _client(sim_url, fake_sleep) as client:
        job = await client.get_job(plan.job_id)
    assert job.id == plan.job_id and len(fake_sleep.delays) == 3


async def test_malformed_json_gives_the_typed_error(sim: Simulator, sim_url: str, fake_sleep: FakeSleep) -> None:
    plan = sim.add_job()
    sim.set_faults(Faults(rate_malformed=1.0))
    async with _client(sim_url, fake_sleep, retry=RetryPolicy(max_attempts=3)) as client:
        with pytest.raises(MalformedResponseError, match="not valid JSON"):
            await client.get_job(plan.job_id)
    assert len(sim.request_log) == 3


async def test_401_gives_the_auth_error_at_once_without_the_key(
    clock: ManualClock, aiohttp_server: object, fake_sleep: FakeSleep, caplog: pytest.LogCaptureFixture
) -> None:
    sim = Simulator(clock=clock, api_key="the-right-key")
    plan = sim.add_job()
    from watcher.simulator import create_app

    server = await aiohttp_server(create_app(sim))  # type: ignore[operator]
    url = str(server.make_url("")).rstrip("/")
    caplog.set_level(logging.DEBUG)
    async with _client(url, fake_sleep) as client:
        with pytest.raises(AuthError) as caught:
            await client.get_job(plan.job_id)
    message = str(caught.value)
    assert "RUNLOOP_API_KEY" in message and "rejected" in message and "401" in message
    assert SECRET not in message and SECRET not in caplog.text and SECRET not in repr(client)
    assert fake_sleep.delays == [] and len(sim.request_log) == 1

    async with RunloopClient(base_url=url, api_key=None, sleep=fake_sleep) as anonymous:
        with pytest.raises(AuthError, match="is not set"):
            await anonymous.get_job(plan.job_id)
    async with RunloopClient(base_url=url, api_key="the-right-key", sleep=fake_sleep) as good:
        assert (await good.get_job(plan.job_id)).id == plan.job_id


async def test_404_is_not_found_without_retry(sim: Simulator, sim_url: str, fake_sleep: FakeSleep) -> None:
    async with _client(sim_url, fake_sleep) as client:
        with pytest.raises(NotFoundError):
            await client.get_job("bmj_nope")
        with pytest.raises(NotFoundError):
            await client.get_run("bmr_nope")
    assert fake_sleep.delays == []


async def test_other_4xx_is_a_client_error_with_the_body(sim: Simulator, sim_url: str, fake_sleep: FakeSleep) -> None:
    async with _client(sim_url, fake_sleep) as client:
        with pytest.raises(ClientRequestError, match="limit must be between 1 and 5000") as caught:
            await client.list_jobs(limit=5001)
    assert caught.value.status == 400 and fake_sleep.delays == []


async def test_timeouts_are_retried_then_raised(sim: Simulator, sim_url: str, fake_sleep: FakeSleep) -> None:
    plan = sim.add_job()
    sim.set_faults(Faults(latency_ms=2000))
    client = _client(sim_url, fake_sleep, timeouts=Timeouts(total_s=0.05), retry=RetryPolicy(max_attempts=2))
    async with client:
        with pytest.raises(TransientApiError) as caught:
            await client.get_job(plan.job_id)
    assert caught.value.reason == Reason.TIMEOUT and len(fake_sleep.delays) == 1


async def test_connection_refused_is_transient(fake_sleep: FakeSleep) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with _client(f"http://127.0.0.1:{port}", fake_sleep, retry=RetryPolicy(max_attempts=2)) as client:
        with pytest.raises(TransientApiError) as caught:
            await client.get_job("bmj_1")
    assert caught.value.reason == Reason.CONNECTION and SECRET not in str(caught.value)


def test_base_url_and_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNLOOP_BASE_URL", "http://sim.local:8787/")
    monkeypatch.setenv("RUNLOOP_API_KEY", SECRET)
    client = RunloopClient()
    assert client.base_url == "http://sim.local:8787"
    assert SECRET not in repr(client) and "api_key=<set>" in repr(client)
    monkeypatch.delenv("RUNLOOP_BASE_URL")
    assert RunloopClient().base_url == "https://api.runloop.ai"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "2.5"}, 2.5),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"}, 30.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:27:00 GMT"}, 0.0),  # in the past: no wait
        ({"Retry-After": "soon"}, None),
        ({"retry-after-ms": "x", "Retry-After": "3"}, 3.0),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    now_ms = 1445412480000  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(headers, now_ms) == expected


async def test_a_truncated_body_is_retried(sim: Simulator, sim_url: str, fake_sleep: FakeSleep) -> None:
    plan = sim.add_job()
    sim.set_faults(Faults(rate_truncated=1.0))
    fake_sleep.on_sleep = _heal_after(sim, 1)  # type: ignore[assignment]
    async with _client(sim_url, fake_sleep) as client:
        job = await client.get_job(plan.job_id)
    assert job.id == plan.job_id and len(fake_sleep.delays) == 1 and len(sim.request_log) == 2


async def test_requests_are_paced_and_capped(sim: Simulator, sim_url: str, fake_sleep: FakeSleep) -> None:
    import asyncio
    import time

    plan = sim.add_job()
    sim.set_faults(Faults(latency_ms=50))
    limits = RequestLimits(max_concurrent=2, max_per_s=50.0)
    async with RunloopClient(base_url=sim_url, api_key=SECRET, limits=limits) as client:
        started = time.monotonic()
        await asyncio.gather(*(client.get_job(plan.job_id) for _ in range(6)))
        elapsed = time.monotonic() - started
    assert client.requests_made == 6
    assert elapsed >= 0.15  # six 50 ms answers, two at a time: three rounds at least
    assert elapsed >= 5 / 50  # and starts at least 20 ms apart

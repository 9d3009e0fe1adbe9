"""The status API over a real SQLite store: health, readiness, metrics, jobs, events with a cursor, JSON errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FIXTURES
from watcher.core.models import BenchmarkJobView
from watcher.core.snapshot import Snapshot
from watcher.diff.jobs import diff
from watcher.store.sqlite import SQLiteStore
from watcher.web.metrics import Metrics
from watcher.web.status import create_status_app, start_status_server

ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
OTHER_JOB = "bmj_OTHER0002"


class FakeSource:
    """A StatusSource whose readiness the test decides, counting metric refreshes."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.metrics = Metrics()
        self.ready: tuple[bool, str] = (True, "polling")
        self.refreshes = 0
        self.fail_refresh = False

    async def readiness(self) -> tuple[bool, str]:
        return self.ready

    async def refresh_metrics(self) -> None:
        self.refreshes += 1
        if self.fail_refresh:
            raise RuntimeError("outbox unavailable")
        self.metrics.outbox(await self.store.outbox_counts())
        self.metrics.watched(len(await self.store.load_memories()))


def _job(name: str) -> BenchmarkJobView:
    return BenchmarkJobView.model_validate_json((FIXTURES / name).read_text())


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """A store holding two jobs: one discovered running then finished (5 events), another discovered (1 event)."""
    async with SQLiteStore(tmp_path / "status.db") as opened:
        first = diff(None, Snapshot(job=_job("job-running.json"), at_ms=1_000))
        await opened.commit(memory=first.memory, events=first.events)
        other_job = _job("job-running.json").model_copy(update={"id": OTHER_JOB, "name": "other"})
        other = diff(None, Snapshot(job=other_job, at_ms=1_500))
        await opened.commit(memory=other.memory, events=other.events)
        finished = diff(first.memory, Snapshot(job=_job("job-completed.json"), at_ms=2_000))
        await opened.commit(memory=finished.memory, events=finished.events)
        yield opened


@pytest.fixture
def source(store: SQLiteStore) -> FakeSource:
    return FakeSource(store)


@pytest.fixture
async def client(source: FakeSource, aiohttp_client: ClientFactory) -> TestClient[web.Request, web.Application]:
    return await aiohttp_client(create_status_app(source))


async def _json(response: aiohttp.ClientResponse, status: int) -> Any:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def test_healthz_says_the_process_is_up(client: TestClient[web.Request, web.Application]) -> None:
    assert await _json(await client.get("/healthz"), 200) == {"status": "ok"}


async def test_readyz_reports_ready_with_its_reason(client: TestClient[web.Request, web.Application]) -> None:
    assert await _json(await client.get("/readyz"), 200) == {"ready": True, "reason": "polling"}


async def test_readyz_is_503_when_not_ready(
    client: TestClient[web.Request, web.Application], source: FakeSource
) -> None:
    source.ready = (False, "no successful poll yet")

    assert await _json(await client.get("/readyz"), 503) == {"ready": False, "reason": "no successful poll yet"}


async def test_readyz_is_503_when_the_check_itself_fails(
    client: TestClient[web.Request, web.Application], source: FakeSource
) -> None:
    async def broken() -> tuple[bool, str]:
        raise ConnectionError("db gone")

    source.readiness = broken  # type: ignore[method-assign]

    body = await _json(await client.get("/readyz"), 503)
    assert body == {"ready": False, "reason": "readiness check failed (ConnectionError)"}


async def test_metrics_are_refreshed_then_rendered(
    client: TestClient[web.Request, web.Application], source: FakeSource
) -> None:
    source.metrics.poll(0.2, ok=True)

    response = await client.get("/metrics")

    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert source.refreshes == 1
    families = {family.name: family for family in text_string_to_metric_families(await response.text())}
    assert families["benchwatch_watched_jobs"].samples[0].value == 2  # set by the refresh
    assert families["benchwatch_poll_duration_seconds"].type == "histogram"


async def test_metrics_are_served_even_when_the_refresh_fails(
    client: TestClient[web.Request, web.Application], source: FakeSource
) -> None:
    source.fail_refresh = True
    source.metrics.poll(0.2, ok=False)

    response = await client.get("/metrics")

    assert response.status == 200
    assert 'benchwatch_polls_total{outcome="error"} 1.0' in await response.text()


async def test_jobs_lists_every_memory_sorted_by_id(client: TestClient[web.Request, web.Application]) -> None:
    jobs = await _json(await client.get("/api/jobs"), 200)

    assert [job["job_id"] for job in jobs] == ["bmj_EXAMPLE0001", OTHER_JOB]
    first = jobs[0]
    assert list(first) == [
        "job_id",
        "job_name",
        "state",
        "finished",
        "counters",
        "first_seen_ms",
        "last_seen_ms",
        "last_change_ms",
        "holder",
    ]
    assert first["job_name"] == "nightly-tb2-2026-09-01"
    assert first["finished"] is True
    assert (first["first_seen_ms"], first["last_seen_ms"], first["last_change_ms"]) == (1_000, 2_000, 2_000)
    assert first["counters"]["n_expected"] == 8
    assert jobs[1] == {
        "job_id": OTHER_JOB,
        "job_name": "other",
        "state": "running",
        "finished": False,
        "counters": {
            "n_completed": 3,
            "n_failed": 1,
            "n_timeout": 0,
            "n_canceled": 0,
            "n_done": 4,
            "n_expected": 8,
        },
        "first_seen_ms": 1_500,
        "last_seen_ms": 1_500,
        "holder": None,
        "last_change_ms": 1_500,
    }


async def test_events_default_to_everything_from_the_start(
    client: TestClient[web.Request, web.Application], store: SQLiteStore
) -> None:
    body = await _json(await client.get("/api/events"), 200)

    stored = await store.events()
    assert body["events"] == [item.event.model_dump(mode="json") for item in stored]
    assert [event["kind"] for event in body["events"]][:2] == ["job.discovered", "job.discovered"]
    assert len(body["events"]) == 6
    assert body["next"] == stored[-1].seq


async def test_events_page_through_with_the_cursor(client: TestClient[web.Request, web.Application]) -> None:
    seen: list[str] = []
    since = 0
    pages = 0
    while True:
        body = await _json(await client.get("/api/events", params={"since": since, "limit": 4}), 200)
        if not body["events"]:
            assert body["next"] == since  # nothing new: the cursor stays where it was
            break
        assert len(body["events"]) <= 4
        seen += [event["id"] for event in body["events"]]
        since = body["next"]
        pages += 1

    everything = await _json(await client.get("/api/events", params={"limit": 1000}), 200)
    assert pages == 2
    assert seen == [event["id"] for event in everything["events"]]


async def test_events_filter_by_job(client: TestClient[web.Request, web.Application]) -> None:
    body = await _json(await client.get("/api/events", params={"job_id": OTHER_JOB}), 200)

    assert [(event["job_id"], event["kind"]) for event in body["events"]] == [(OTHER_JOB, "job.discovered")]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("since=abc", "since must be an integer between 0 and 9223372036854775807"),
        ("since=-1", "since must be an integer between 0 and 9223372036854775807"),
        ("since=" + "9" * 30, "since must be an integer between 0 and 9223372036854775807"),  # a 500 before
        ("since=" + "9" * 5000, "since must be an integer between 0 and 9223372036854775807"),
        ("limit=0", "limit must be an integer between 1 and 1000"),
        ("limit=1001", "limit must be an integer between 1 and 1000"),
        ("limit=2.5", "limit must be an integer between 1 and 1000"),
    ],
)
async def test_bad_event_queries_are_400_with_a_json_reason(
    client: TestClient[web.Request, web.Application], query: str, message: str
) -> None:
    assert await _json(await client.get(f"/api/events?{query}"), 400) == {"error": message}


async def test_unknown_paths_are_404_json(client: TestClient[web.Request, web.Application]) -> None:
    assert await _json(await client.get("/api/nope"), 404) == {"error": "not found"}


async def test_wrong_methods_are_405_json(client: TestClient[web.Request, web.Application]) -> None:
    assert await _json(await client.post("/api/jobs"), 405) == {"error": "method not allowed"}


async def test_a_failing_store_is_a_500_without_a_traceback(
    client: TestClient[web.Request, web.Application], store: SQLiteStore
) -> None:
    await store.close()

    response = await client.get("/api/jobs")

    assert await _json(response, 500) == {"error": "internal error"}


async def test_started_server_reports_the_port_it_bound(source: FakeSource) -> None:
    server = await start_status_server(create_status_app(source), "127.0.0.1", 0)
    try:
        assert server.port > 0
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{server.port}/healthz") as got:
            assert got.status == 200
            assert await got.json() == {"status": "ok"}
    finally:
        await server.close()


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(1024):
                pass
    except TimeoutError:
        return False
    return True


async def test_slow_and_idle_connections_are_closed(source: FakeSource) -> None:
    """Slowloris: a connection that sends nothing, or trickles a header, is closed after the idle timeout."""
    server = await start_status_server(create_status_app(source), "127.0.0.1", 0, idle_timeout_s=0.3)
    try:
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", server.port)
        slow_writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        trickle = asyncio.create_task(_trickle(slow_writer))
        assert await _closed_within(idle_reader, 3.0)
        assert await _closed_within(slow_reader, 3.0)
        trickle.cancel()
        for writer in (idle_writer, slow_writer):
            writer.close()
    finally:
        await server.close()


async def _trickle(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        for _ in range(100):
            writer.write(b"X-Slow: 1\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)


async def test_oversized_requests_are_refused_without_a_traceback(
    source: FakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_status_server(create_status_app(source), "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{server.port}/healthz"
            async with session.get(url, data=b"x" * 100_000) as big_body:
                assert big_body.status == 413
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
            assert (await reader.read(64)).startswith(b"HTTP/1.0 400")
            writer.close()
    finally:
        await server.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 2 and all("\n" not in line and "aaaa" not in line for line in refused)

"""Services started in this process (the `Service` seam, on a manual clock) and asked through their real status
servers: what the HTTP tests of replicas and of a store that cannot write share."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from notifiers.worker import RECORD_WINDOW
from tests.conftest import POSTGRES_ADMIN_URL
from tests.lifecycle import SECRET
from watcher.app.config import load_config
from watcher.app.service import Service
from watcher.core.clock import ManualClock

INTERVAL_MS = 10_000


def database_url(name: str) -> str:
    """The URL of the database `name` on the machine's PostgreSQL (e.g. the `postgres_database` fixture's)."""
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def write_config(
    folder: Path, *, api: str, hook: str, state: str, jobs: Sequence[str], name: str = "bw", concurrency: int = 4
) -> Path:
    """benchwatch.yaml watching `jobs`, telling each job discovered to a signed webhook (`concurrency` sends at a
    time), its state at `state` (`path: …` or `url: …`)."""
    path = folder / f"{name}.yaml"
    path.write_text(
        f"runloop: {{base_url: '{api}'}}\n"
        f"watch: {{jobs: [{', '.join(jobs)}], poll_interval: 10s, max_requests_per_s: null, stall_after: 1h}}\n"
        f"state: {{{state}}}\nhttp: {{port: 0}}\n"
        f"notifiers:\n  hook: {{type: webhook, url: '{hook}', secret: '{SECRET}', concurrency: {concurrency}}}\n"
        "rules:\n  - {name: discovered, on: job.discovered, notify: hook}\n"
    )
    return path


class Running:
    """A started service and an HTTP session to its status server."""

    def __init__(self, service: Service, http: aiohttp.ClientSession, stack: contextlib.AsyncExitStack) -> None:
        self.service = service
        self.http = http
        self._stack = stack
        port = service.status.port if service.status is not None else 0
        self.base = f"http://127.0.0.1:{port}"

    @classmethod
    async def start(
        cls, config: Path, clock: ManualClock, http: aiohttp.ClientSession, *, record_window: int = RECORD_WINDOW
    ) -> Running:
        """Open the service (store, status server) without scheduling anything: the test runs its steps."""

        async def sleep(seconds: float) -> None:  # the poll spread and retries move the clock instead of waiting
            clock.advance(round(seconds * 1000))

        service = Service(load_config(config, {}), clock=clock, sleep=sleep, record_window=record_window)
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(service.started())
        return cls(service, http, stack)

    @property
    def holder(self) -> str:
        """The replica's name, as `/api/jobs` gives it."""
        return str(getattr(self.service.store, "holder", ""))

    async def stop(self) -> None:
        """Stop in order (as on SIGTERM): the status server closes, the store lets go of leases and claims."""
        await self._stack.aclose()

    async def get(self, path: str) -> tuple[int, str]:
        """The status and body of GET `path`."""
        async with self.http.get(self.base + path) as response:
            return response.status, await response.text()

    async def json(self, path: str, status: int = 200) -> Any:
        """GET `path`, which must answer `status`, as JSON."""
        async with self.http.get(self.base + path) as response:
            assert response.status == status, await response.text()
            return await response.json()

    async def metric(self, name: str) -> float:
        """One unlabelled series of a real scrape of /metrics."""
        status, body = await self.get("/metrics")
        assert status == 200, body
        samples = [s for family in text_string_to_metric_families(body) for s in family.samples if s.name == name]
        assert len(samples) == 1, f"{name}: {samples}"
        return float(samples[0].value)


async def step(clock: ManualClock, replicas: Sequence[Running]) -> None:
    """One poll interval: a cycle on each replica in turn, then the clock to the next interval."""
    started_ms = clock.now_ms()
    for replica in replicas:
        await replica.service.poll_once()
    clock.set(max(clock.now_ms(), started_ms + INTERVAL_MS))

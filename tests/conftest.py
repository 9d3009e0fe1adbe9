"""Shared fixtures: a movable clock, the simulator served on a real local port, a sleep that never waits."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from notifiers.protocol import NotifierContext
from watcher.core.clock import ManualClock
from watcher.simulator import Simulator, create_app
from watcher.store.protocol import NamespacedState
from watcher.store.sqlite import SQLiteStore

FIXTURES = Path(__file__).parent / "fixtures"

ServerFactory = Callable[..., Awaitable[TestServer]]


class FakeSleep:
    """An injected `sleep`: records each delay, moves the clock, and can run a hook (e.g. heal a fault)."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.delays: list[float] = []
        self.on_sleep: Callable[[int], None] | None = None

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(int(seconds * 1000))
        if self.on_sleep is not None:
            self.on_sleep(len(self.delays))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sim(clock: ManualClock) -> Simulator:
    return Simulator(seed=7, clock=clock)


@pytest.fixture
async def sim_url(sim: Simulator, aiohttp_server: ServerFactory) -> str:
    server = await aiohttp_server(create_app(sim))
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
def fake_sleep(clock: ManualClock) -> FakeSleep:
    return FakeSleep(clock)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
async def context(session: aiohttp.ClientSession, tmp_path: Path) -> AsyncIterator[NotifierContext]:
    """What a notifier gets: the shared session and durable state in a real SQLite file."""
    async with SQLiteStore(tmp_path / "notifier-state.db") as store:
        yield NotifierContext(session=session, state=NamespacedState(store, "notifier.test"))


@pytest.fixture
def ram_path(tmp_path: Path) -> Iterator[Path]:
    """A folder in RAM (/dev/shm) where there is one, else `tmp_path`: for tests that commit to SQLite thousands of
    times to check logic, not the disk — there `synchronous=FULL` makes every commit an fsync, most of their time."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and shutil.disk_usage(shm).free > 256 * 2**20):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="benchwatch-test-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)

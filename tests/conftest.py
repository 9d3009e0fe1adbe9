"""Shared fixtures: a movable clock, the simulator served on a real local port, a sleep that never waits."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import psycopg
import pytest
from aiohttp.test_utils import TestServer

from notifiers.protocol import NotifierContext
from watcher.core.clock import ManualClock
from watcher.simulator import Simulator, create_app
from watcher.store.postgres import PostgresStore
from watcher.store.protocol import NamespacedState
from watcher.store.sqlite import SQLiteStore

FIXTURES = Path(__file__).parent / "fixtures"
# The machine's PostgreSQL (trust auth); `.ci/run` makes sure it is running.
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

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


class Backend:
    """A store backend for a test: SQLite files in the test's folder, or a PostgreSQL database of its own.

    Each `name` is a separate store (an SQLite file; a PostgreSQL schema in the test's database), so a test can
    keep several side by side, or reopen one by its name.
    """

    def __init__(self, kind: str, tmp_path: Path, database: str | None = None) -> None:
        self.kind = kind
        self._tmp_path = tmp_path
        self._database = database
        self._schemas: set[str] = set()

    def location(self, name: str = "state") -> str:
        """Where the store called `name` lives: a file path or a PostgreSQL URL."""
        if self._database is None:
            return str(self._tmp_path / f"{name}.db")
        schema = name.replace("-", "_")
        if schema not in self._schemas:
            with psycopg.connect(self._url(), autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'.encode())
            self._schemas.add(schema)
        return self._url(f"?options=-csearch_path%3D{schema}")

    def store(
        self, name: str = "state", *, step_hook: Callable[[str], None] | None = None
    ) -> SQLiteStore | PostgresStore:
        """The store called `name`, not yet opened."""
        if self._database is None:
            return SQLiteStore(self.location(name), step_hook=step_hook)
        return PostgresStore(self.location(name), step_hook=step_hook)

    def _url(self, query: str = "") -> str:
        return f"postgresql://postgres@127.0.0.1:5432/{self._database}{query}"


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database of the test's own on the machine's server, dropped afterwards."""
    name = f"bw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield name
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Every store test runs on both backends: the conformance suite."""
    if request.param == "sqlite":  # in RAM where there is room: store tests check logic, not fsyncs
        yield Backend("sqlite", request.getfixturevalue("ram_path"))
        return
    yield Backend("postgres", tmp_path, request.getfixturevalue("postgres_database"))


def _pg_bin() -> Path:
    """The server's programs (initdb, pg_ctl): Debian keeps them out of PATH, per major version."""
    return Path("/usr/lib/postgresql") / sorted(os.listdir("/usr/lib/postgresql"))[-1] / "bin"


class ThrowawayPostgres:
    """A PostgreSQL cluster of the test's own (initdb in a temp folder, a free port), so a test can stop and
    start the server under running replicas. As root, the server runs as the `postgres` user (it refuses root)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="benchwatch-pg-"))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.folder, "postgres")
        self._run("initdb", "-D", str(self.folder / "data"), "-A", "trust", "-U", "postgres", "--no-sync", "-N")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as, str(_pg_bin() / tool), *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.folder / "data"), "-o", options, "-l", str(self.folder / "log"), "-w", "start"
        )

    def stop(self) -> None:
        """Stop the server at once (open connections are cut, as in a crash of the database machine)."""
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        """Stop if running, and delete the cluster."""
        subprocess.run(
            [*self._as, str(_pg_bin() / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop"],
            capture_output=True, check=False, timeout=60,
        )  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A running cluster of the test's own; removed afterwards."""
    cluster = ThrowawayPostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


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

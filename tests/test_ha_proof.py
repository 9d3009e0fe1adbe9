"""Proof (issue 14): three real `benchwatch run` replicas on one PostgreSQL server under the simulator, replicas
killed (`kill -9`) and restarted at random moments, the server stopped and started once — what arrives equals what
one clean replica sends: nothing lost, nothing told twice under two ids, and every notification that arrived more
than once shown in the attempt log as `interrupted` (a send in flight at a kill), at least once per extra arrival.

The moments come from a seeded `random.Random` (the seed is in every failure message; `BENCHWATCH_HA_SEED=N` replays
a plan — its moments, not its timing). The simulator's clock moves one step at each replica's poll cycle (its list
request), as in tests/test_service_e2e.py; jobs arrive in waves, so sends keep going while the disruptions happen.
The receiver answers each request after REPLY_DELAY_S, and each kill waits for the next request to arrive at it, so
a kill often lands while a send is in flight. Disruptions happen one after the other: a killed replica is restarted
(a new process, a new replica name) before the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ServerFactory, ThrowawayPostgres
from tests.fakes.base import Recorded, Reply
from tests.fakes.webhook import WebhookReceiver
from tests.lifecycle import (
    API_KEY,
    SECRET,
    SPECS,
    all_finished,
    difference,
    expected,
    received,
    unique,
    write_config,
)
from tests.test_service_e2e import Watcher, World
from watcher.core.clock import ManualClock
from watcher.core.records import DeliveryOutcome
from watcher.simulator import Simulator, create_app
from watcher.store.postgres import PostgresStore

STEP_MS = 20_000  # simulated time per replica cycle: a job's 500 s of life spans ~25 cycles (~8 s with 3 replicas)
REPLY_DELAY_S = 0.3  # the receiver's answer time: the window in which a kill catches a send in flight
WAVES, WAVE_EVERY_CYCLES = 2, 12  # two lifecycle jobs per wave
SLOTS = ("a", "b", "c")
DEADLINE_S = 120.0


class SlowReceiver(WebhookReceiver):
    """A webhook receiver that takes REPLY_DELAY_S to answer (it records each request when it arrives)."""

    def answer(self, recorded: Recorded) -> Reply:
        """200, after a while."""
        return Reply(200, {"ok": True}, delay_s=REPLY_DELAY_S)


@dataclass
class Chaos:
    """What happens when: drawn whole from the seed before the run, so a seed names one plan."""

    seed: int
    kinds: list[str]  # "kill" twice and "database" once, in a random order
    at_cycles: list[int]  # each disruption starts at the first arrival after this many cycles
    victims: list[int]  # which live replica each kill takes (an index into them, by slot)
    down_cycles: list[int]  # a killed replica is restarted this many cycles of the others later
    database_down_s: float
    happened: list[str] = field(default_factory=list)

    @classmethod
    def draw(cls, seed: int) -> Chaos:
        rng = random.Random(seed)
        kinds = ["kill", "kill", "database"]
        rng.shuffle(kinds)
        at_cycles = sorted(rng.sample(range(10, 3 * WAVE_EVERY_CYCLES), len(kinds)))
        victims = [rng.randrange(len(SLOTS)) for _ in kinds]
        down_cycles = [rng.randint(1, 6) for _ in kinds]
        return cls(seed, kinds, at_cycles, victims, down_cycles, round(rng.uniform(0.5, 3.0), 2))

    def __str__(self) -> str:
        plan = ", ".join(f"{kind}@{cycle}" for kind, cycle in zip(self.kinds, self.at_cycles, strict=True))
        return f"seed {self.seed} ({plan}; database down {self.database_down_s}s); happened: {self.happened}"


class Replicas:
    """The live `benchwatch run` processes, one per slot; every process ever started is kept, to be reaped."""

    def __init__(self, configs: dict[str, Path], logs: Path) -> None:
        self.configs, self.logs = configs, logs
        self.live: dict[str, Watcher] = {}
        self.started: list[Watcher] = []
        self.killed: list[Watcher] = []

    async def start(self, slot: str) -> Watcher:
        watcher = Watcher(self.configs[slot], self.logs / f"replica-{slot}-{len(self.started)}.log")
        self.started.append(watcher)
        await watcher.start()
        self.live[slot] = watcher
        return watcher

    async def kill(self, slot: str) -> int:
        watcher = self.live.pop(slot)
        assert watcher.process is not None
        await watcher.kill()
        assert watcher.process.returncode == -signal.SIGKILL
        self.killed.append(watcher)
        return watcher.process.pid


async def _until(condition: Callable[[], bool], what: str, chaos: Chaos, deadline: float) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; {chaos}")
        await asyncio.sleep(0.02)


async def _until_cycle(world: World, cycle: int, chaos: Chaos, deadline: float) -> None:
    await _until(lambda: world.cycles >= cycle, f"cycle {cycle}", chaos, deadline)


async def _until_arrival(world: World, chaos: Chaos, deadline: float) -> None:
    """Until the next request arrives at the receiver (or ten cycles pass without one)."""
    arrived, cycle = len(world.receiver.requests), world.cycles
    await _until(
        lambda: len(world.receiver.requests) > arrived or world.cycles > cycle + 10, "an arrival", chaos, deadline
    )


async def _until_later(seconds: float, chaos: Chaos, deadline: float) -> None:
    until_s = time.monotonic() + seconds
    await _until(lambda: time.monotonic() >= until_s, f"{seconds}s later", chaos, deadline)


async def _disrupt(chaos: Chaos, world: World, replicas: Replicas, cluster: ThrowawayPostgres, deadline: float) -> None:
    """Each disruption in turn, the next once the last is over (the killed replica restarted, the server up)."""
    receiver = world.receiver
    for kind, at_cycle, victim, down_cycles in zip(
        chaos.kinds, chaos.at_cycles, chaos.victims, chaos.down_cycles, strict=True
    ):
        await _until_cycle(world, at_cycle, chaos, deadline)
        await _until_arrival(world, chaos, deadline)  # then a send is in flight: the receiver answers later
        when = f"cycle {world.cycles}, {len(receiver.requests)} arrived"
        if kind == "database":
            await asyncio.to_thread(cluster.stop)  # pg_ctl blocks: the simulator and the receiver keep answering
            chaos.happened.append(f"{when}: database stopped")
            await _until_later(chaos.database_down_s, chaos, deadline)
            await asyncio.to_thread(cluster.start)
            chaos.happened.append(f"cycle {world.cycles}: database started")
            continue
        slot = sorted(replicas.live)[victim]
        pid = await replicas.kill(slot)
        chaos.happened.append(f"{when}: kill -9 replica {slot} (pid {pid})")
        await _until_cycle(world, world.cycles + down_cycles, chaos, deadline)
        await replicas.start(slot)
        chaos.happened.append(f"cycle {world.cycles}: replica {slot} restarted")


async def _add_waves(world: World, chaos: Chaos, deadline: float) -> None:
    for wave in range(WAVES):
        await _until_cycle(world, wave * WAVE_EVERY_CYCLES, chaos, deadline)
        for spec in SPECS:
            world.sim.add_job(spec.model_copy(update={"name": f"{spec.name}-w{wave}"}))


def _seed() -> int:
    given = os.environ.get("BENCHWATCH_HA_SEED")
    return int(given) if given else random.SystemRandom().randrange(2**32)


async def test_three_replicas_killed_and_restarted_at_random_and_a_database_restart_lose_nothing(
    aiohttp_server: ServerFactory, throwaway_postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    chaos = Chaos.draw(_seed())
    print(f"chaos plan: {chaos}")  # shown with any failure, even one that does not name the seed itself
    started_s = time.monotonic()
    deadline = started_s + DEADLINE_S
    clock = ManualClock()
    world = World(clock, Simulator(seed=17, clock=clock, api_key=API_KEY), SlowReceiver(SECRET))
    world.step_ms = STEP_MS
    app = create_app(world.sim)
    app.middlewares.append(world.count_cycles)
    api = str((await aiohttp_server(app)).make_url("")).rstrip("/")
    hook = str((await aiohttp_server(world.receiver.app())).make_url("/hook"))
    replicas = Replicas(_configs(tmp_path, api, hook, throwaway_postgres.url), tmp_path)
    pacing = asyncio.create_task(world.pace())
    tasks: list[asyncio.Task[None]] = []
    try:
        await asyncio.gather(*(replicas.start(slot) for slot in SLOTS))
        tasks = [
            asyncio.create_task(_disrupt(chaos, world, replicas, throwaway_postgres, deadline)),
            asyncio.create_task(_add_waves(world, chaos, deadline)),
        ]
        await _until_all_told(world, tasks, chaos, deadline)
        told_s = time.monotonic() - started_s
        extra, interrupted = await _check_attempt_log(world.receiver, throwaway_postgres.url, chaos)
        for watcher in list(replicas.live.values()):
            assert await watcher.terminate() == 0, f"{watcher.log()[-2000:]}; {chaos}"
        for watcher in replicas.started:
            assert "Traceback" not in watcher.log(), f"{watcher.log_path}: {watcher.log()[-3000:]}; {chaos}"
        assert all(w.process is not None and w.process.returncode is not None for w in replicas.started)
        assert len(replicas.killed) == 2
        print(
            f"\n{chaos}\n{len(unique(world.receiver))} notifications, {extra} extra arrivals, {interrupted} "
            f"interrupted attempts; all told after {told_s:.1f}s, {world.cycles} cycles"
        )
    finally:
        for task in [pacing, *tasks]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for watcher in replicas.started:
            await watcher.kill()


def _configs(tmp_path: Path, api: str, hook: str, url: str) -> dict[str, Path]:
    """A folder and a config per slot: the lifecycle config on the shared database, lease TTL 2 s."""
    configs = {}
    for slot in SLOTS:
        (tmp_path / slot).mkdir()
        config = write_config(tmp_path / slot, api, hook)
        config.write_text(
            config.read_text().replace("state: {path: ./state.db}", f"state: {{url: '{url}', lease_ttl: 2s}}")
        )
        configs[slot] = config
    return configs


async def _until_all_told(world: World, tasks: list[asyncio.Task[None]], chaos: Chaos, deadline: float) -> None:
    """Until every wave is in, every disruption over, every job ended and every notification it calls for arrived."""

    def all_told() -> bool:
        for task in tasks:
            if task.done() and (error := task.exception()) is not None:
                raise error
        done = all(task.done() for task in tasks) and all_finished(world.sim)
        return done and received(world.receiver) == expected(world.sim)

    try:
        await _until(all_told, "every notification", chaos, deadline)
    except AssertionError as exc:
        told = difference(received(world.receiver), expected(world.sim))
        raise AssertionError(f"{exc}; after {world.cycles} cycles: {told}") from None


async def _check_attempt_log(receiver: WebhookReceiver, url: str, chaos: Chaos) -> tuple[int, int]:
    """Each notification that arrived n times has at least n - 1 interrupted attempts; returns the extra arrivals
    and the interrupted attempts, in all."""
    arrivals = Counter(delivery.webhook_id or "" for delivery in receiver.deliveries)
    async with PostgresStore(url, holder="the-test") as store:
        logs = {nid: await store.deliveries(nid) for nid in arrivals}
    interrupted = Counter(
        nid for nid, attempts in logs.items() for a in attempts if a.outcome == DeliveryOutcome.INTERRUPTED
    )
    for nid, count in arrivals.items():
        assert count - 1 <= interrupted[nid], f"{nid} arrived {count} times; its attempts: {logs[nid]}; {chaos}"
    return arrivals.total() - len(arrivals), interrupted.total()


pytestmark = [pytest.mark.filterwarnings("ignore:.*pool.*:RuntimeWarning"), pytest.mark.slow]

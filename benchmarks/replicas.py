"""`ha`: real `benchwatch run` processes on the `many` and `large` workloads — per-replica CPU and database round
trips per changed job with 1 and 3 replicas on PostgreSQL, failover time after `kill -9` of one of 3, and, on one
process, whole-process CPU of unchanged polls against `orjson.loads` of the same bytes (SQLite and PostgreSQL).

Each replica is its own process (`python -m watcher run`), measured from /proc (utime + stime). The simulator and
the webhook receiver run in their own processes too; the benchmark creates a database of its own on the local
PostgreSQL server (`BENCH_PG_URL`, default postgresql://postgres@127.0.0.1:5432) and drops it at the end.

Round trips are counted at the server: `xact_commit + xact_rollback` of the database in `pg_stat_database`, read
before and after a window (the benchmark's own reads subtracted). The store runs in autocommit, so every statement
outside a transaction is one; a commit of a changed job is one for all its statements — a lower bound on round
trips, exact for the reads and the lease heartbeat.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from benchmarks import hatable, workloads
from benchmarks.floor import measure_floor
from benchmarks.hookrecv import ReceiverClient
from benchmarks.rig import CONFIG, DISCOVER_ALL
from benchmarks.simproc import API_KEY, Child, SimControl, start_child, start_simulator
from benchmarks.workloads import Workload
from watcher.core.models import JobState

PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432")
POLL_INTERVAL_S = 1
LEASE_TTL_S = 2  # short, so the failover is measured in seconds; the bound scales with it (docs/ha.md)
FAILOVER_BOUND_S = LEASE_TTL_S + POLL_INTERVAL_S
FAILOVER_DEADLINE_S = 5 * FAILOVER_BOUND_S  # then the jobs still unpolled are reported as such
UNCHANGED_VS_PARSE_TARGET = 0.3
# Issue 28: three replicas together spend at most this many times one replica's transactions, and its CPU, on the
# same work: windows of the same changes (see `measure`).
REPLICAS_TARGET = 1.2
STILL_READINGS = 4  # `transactions_settled`: readings a second apart, in a row, that show nothing late
SETTLED_DEADLINE_S = 90.0
QUIET_S = 2.0 * POLL_INTERVAL_S  # a changed window ends once no notification came for this long (`absorbed`)
ABSORB_DEADLINE_S = 120.0
SETTLE_DEADLINE_S = 900.0  # the first pass over 10,000 jobs, and its notifications sent
SETTLE_SAMPLE_S = 2.0 * POLL_INTERVAL_S  # two cycles a sample: one more or less is within the tolerance
QUICK_ADVANCE_MS = 300_000  # a tiny workload's jobs must outlive the measurement: its own moves are 20 min
LOG_SIZE = 10_000  # the simulator's request log (watcher/simulator/state.py REQUEST_LOG_SIZE)
JOB_PATH = "/v1/benchmark_jobs/"


@dataclass(frozen=True)
class Windows:
    """How long each measured window lasts, in poll intervals, and how many changed windows each setup has."""

    unchanged: int
    changed: int
    rounds: int = 1  # changed windows of one replica and of three, alternated (see `_changed_rounds`)


def progress(message: str) -> None:
    """What the benchmark is doing, on stderr (a full run takes minutes)."""
    print(f"[ha {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def switches(pid: int) -> tuple[int, int]:
    """A process's context switches (voluntary and not: each a sleep and a wake-up, or a turn taken away) and its
    moves to another CPU, every thread summed, from /proc (`se.nr_migrations` where the kernel keeps scheduler
    statistics; 0 where it does not)."""
    switched = moved = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            for line in (task / "status").read_text().splitlines():
                if "ctxt_switches:" in line:
                    switched += int(line.split(":", 1)[1])
            for line in (task / "sched").read_text().splitlines():
                if line.startswith("se.nr_migrations"):
                    moved += int(line.split(":", 1)[1])
    return switched, moved


async def transactions_of(names: list[str]) -> int:
    """Transactions of these databases so far, all together, read from the `postgres` database (not counted in
    them). Backends report their counts when idle, at most a second late: wait that long first."""
    await asyncio.sleep(1.2)
    async with await psycopg.AsyncConnection.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT coalesce(sum(xact_commit + xact_rollback), 0) FROM pg_stat_database WHERE datname = ANY(%s)",
            (names,),
        )
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def transactions_settled(names: list[str], *, stopped: bool) -> int:
    """`transactions_of`, once every backend has reported what it counted. A backend reports at most once a second,
    and one that found the statistics locked (many reporting at once) tries again later and later: up to a minute
    on PostgreSQL 15. Three replicas resumed after a pause retake their expired leases in a burst of 600–850
    transactions, 5 s before their window; about 200 of them were still unreported when it began and were counted
    in it — three replicas' transactions came out 1.3 times what the server's statement log shows for the same
    window (one replica, never in such a burst: within 0.2 %).

    `stopped` (every client of the databases SIGSTOPped): the count, once it has not moved for STILL_READINGS
    readings a second apart. Else (clients at rest): once the last STILL_READINGS increments are each at most twice
    the smallest of them plus ten — the rest rate, with no late report among them (a backend's late report
    holds 50–200). SETTLED_DEADLINE_S at most, then as it is (said)."""
    deadline = time.monotonic() + SETTLED_DEADLINE_S
    readings = [await transactions_of(names)]
    while time.monotonic() < deadline:
        readings.append(await transactions_of(names))
        steps = [after - before for before, after in itertools.pairwise(readings)][-STILL_READINGS:]
        if len(steps) < STILL_READINGS:
            continue
        if (max(steps) == 0) if stopped else (max(steps) <= 2 * min(steps) + 10):
            return readings[-1]
    progress(f"the transaction count of {names} did not settle within {SETTLED_DEADLINE_S:g}s: taken as it is")
    return readings[-1]


class Database:
    """A database of the benchmark's own, and its transaction counter."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"{PG_URL}/{name}"
        self.own_reads = 1  # transactions of the benchmark's own in a window: its read of the takeovers

    async def create(self) -> None:
        """CREATE DATABASE (dropping a leftover of the same name)."""
        async with await psycopg.AsyncConnection.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{self.name}"')

    async def drop(self) -> None:
        """DROP DATABASE, ending whatever is still connected."""
        async with await psycopg.AsyncConnection.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    async def transactions(self) -> int:
        """Transactions of the database so far (`transactions_of`)."""
        return await transactions_of([self.name])

    async def settled(self, *, stopped: bool) -> int:
        """Transactions of the database so far, every one reported (`transactions_settled`)."""
        return await transactions_settled([self.name], stopped=stopped)

    async def takeovers(self) -> int:
        """Leases taken so far, all replicas together (each take moves a lease's epoch on by one)."""
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            cursor = await conn.execute("SELECT coalesce(sum(epoch), 0) FROM job_leases")
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def holders(self) -> dict[str, str]:
        """Job id → the replica holding its lease."""
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            cursor = await conn.execute("SELECT job_id, holder FROM job_leases WHERE holder <> ''")
            return {job_id: holder for job_id, holder in await cursor.fetchall()}


class Databases:
    """The shards' databases, counted together as one (`Database`'s counters)."""

    def __init__(self, parts: list[Database]) -> None:
        self.parts = parts
        self.own_reads = len(parts)  # a read of the takeovers in each

    async def transactions(self) -> int:
        """Transactions of every part so far (`transactions_of`)."""
        return await transactions_of([db.name for db in self.parts])

    async def settled(self, *, stopped: bool) -> int:
        """Transactions of every part so far, every one reported (`transactions_settled`)."""
        return await transactions_settled([db.name for db in self.parts], stopped=stopped)

    async def takeovers(self) -> int:
        """Leases taken so far in every part."""
        return sum([await db.takeovers() for db in self.parts])


class Bench:
    """The simulator and receiver of one workload, and the replicas started on them."""

    def __init__(self, workload: Workload, sim: SimControl, receiver: ReceiverClient, folder: Path) -> None:
        self.workload = workload
        self.sim = sim
        self.receiver = receiver
        self.folder = folder
        self.replicas: list[Child] = []
        self.advance_ms = workload.advance_ms
        self.tolerance = 1.0 if workload.title.startswith("quick") else 0.35  # tiny: polling at all is enough
        self.rest_rate: int | None = None  # requests per sample when first settled
        self.rest_running = 0  # jobs running then
        self._terminal: set[str] | None = None
        self.polled_at_rest: set[str] = set()  # the jobs polled in the last settling sample

    def config(self, state: str, name: str, select: str = DISCOVER_ALL) -> Path:
        """A config file for `state` (a YAML flow mapping) watching the jobs `select` picks (a `watch:` key)."""
        path = self.folder / f"{name}.yaml"
        path.write_text(
            CONFIG.format(
                base_url=self.sim.base_url,
                api_key=API_KEY,
                hook_url=self.receiver.hook_url,
                interval_s=POLL_INTERVAL_S,
                state=state,
                select=select,
            )
        )
        return path

    async def start_replicas(self, config: Path, count: int) -> list[Child]:
        """`count` `benchwatch run` processes on `config`."""
        return await self._start([config] * count)

    async def start_shards(self, states: list[str]) -> list[Child]:
        """A `benchwatch run` process per store in `states`, each watching its own share of the workload's jobs
        (`watch.jobs`, by id, dealt in turn): processes with no coordination at all — the control beside three
        replicas sharing one store (`_changed_rounds`)."""
        job_ids = await self.sim.job_ids()
        configs = []
        for index, state in enumerate(states):
            share = job_ids[index :: len(states)]
            # a share left empty (a quick run's few jobs) watches nothing, as a process of its own all the same
            select = f"jobs: [{', '.join(share)}]" if share else "discover: {name: 'no job has this name'}"
            configs.append(self.config(state, f"shard-{index}", select))
        return await self._start(configs)

    async def _start(self, configs: list[Path]) -> list[Child]:
        """A `benchwatch run` process on each config, started together."""
        started = await asyncio.gather(
            *(start_child(["-m", "watcher", "run", "--config", str(path)], ready_path=None) for path in configs)
        )
        self.replicas = list(started)
        return self.replicas

    async def stop_replicas(self) -> None:
        """SIGTERM every replica still running (resumed first, if paused), and wait."""
        self.resume()
        for child in self.replicas:
            await child.stop()
        self.replicas = []

    def pause(self) -> None:
        """SIGSTOP every replica: the other setup's window runs alone (`_changed_rounds`)."""
        for child in self.replicas:
            if child.process.returncode is None:
                child.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT every replica (their leases have expired meanwhile: their heartbeats renew or retake them)."""
        for child in self.replicas:
            if child.process.returncode is None:
                child.process.send_signal(signal.SIGCONT)

    async def settle(self, db: Database | Databases | None = None) -> None:
        """Wait until the replicas poll at rest: two samples in a row with about the same requests, no
        notification arriving (the first pass's backlog sent) and no terminal job polled (each has come to rest:
        after the first pass, every terminal job is polled once more to confirm it) — and, after the first
        settling, at least half the request rate it ended at for as many running jobs (the changed windows finish
        jobs: by the third round of `many`, 0.58 of the first rate was the whole rate at rest). With `db`, also no
        lease taken in either sample: replicas resumed after a pause deal their expired leases out again, and poll
        each job taken over whole."""
        deadline = time.monotonic() + SETTLE_DEADLINE_S
        terminal = await self.terminal_jobs()
        running = len(await self.sim.job_ids()) - len(await self.sim.terminal_ids())
        served = (await self.sim.stats())["requests"]
        samples: list[tuple[int, int, int]] = []  # requests, notifications, GETs of terminal jobs and leases taken
        arrived = await self.receiver.count()
        taken = await db.takeovers() if db is not None else 0
        while time.monotonic() < deadline:
            await asyncio.sleep(SETTLE_SAMPLE_S)
            self._check_alive()
            lines, now_served = await self.sim.requests_since(served)
            now_arrived = await self.receiver.count()
            now_taken = await db.takeovers() if db is not None else 0
            moved = len(polled_jobs(lines) & terminal) + now_taken - taken
            samples.append((now_served - served, now_arrived - arrived, moved))
            taken = now_taken
            self.polled_at_rest = polled_jobs(lines)  # every running job: a sample spans two poll intervals
            served, arrived = now_served, now_arrived
            last = samples[-2:]
            progress(f"settling: requests, notifications, terminal polls per {SETTLE_SAMPLE_S:g} s {last}")
            floor = 1 if self.rest_rate is None else max(1, self.rest_rate * running // (2 * self.rest_running))
            if len(last) < 2 or any(notes or polls for _, notes, polls in last):
                continue
            (before, _, _), (after, _, _) = last
            if min(before, after) >= floor and abs(before - after) <= self.tolerance * max(before, after):
                if self.rest_rate is None:
                    self.rest_rate, self.rest_running = min(before, after), max(1, running)
                return
        raise RuntimeError(f"the replicas did not settle within {SETTLE_DEADLINE_S:g}s")

    async def terminal_jobs(self) -> set[str]:
        """The ids of the workload's terminal jobs when first asked (the settling compares with these)."""
        if self._terminal is None:
            self._terminal = await self.sim.terminal_ids()
        return self._terminal

    def _check_alive(self) -> None:
        for child in self.replicas:
            if child.process.returncode is not None:
                raise RuntimeError(f"a replica exited ({child.process.returncode}): {child.stderr_tail()}")

    async def window(
        self,
        intervals: int,
        *,
        advance: bool,
        db: Database | Databases | None,
        absorbed: bool = False,
        expected: frozenset[str] = frozenset(),
        pause: bool = False,
    ) -> dict[str, Any]:
        """`intervals` poll intervals, the clock moved at each (or still); what every replica spent. `absorbed`:
        the window goes on, the clock still, until the changes are absorbed — every job polled again since the
        last move, then no notification for `QUIET_S` — so that setups which work through the same changes at
        different speeds are measured on all of them (a slower one pays its extra polling at rest, as it would).
        `pause`: the replicas are paused as the window ends, and its transactions counted once every one has been
        reported (`transactions_settled`); it begins once the count moves at the rate at rest, with no late report of
        what came before (the burst of leases retaken after a pause).

        With `advance`, the clock moves on only once every job still running has been polled since its last move
        (`_polled_since`): every setup sees every state of every job, so one replica and three do the same work.
        Moved every interval regardless, a setup that could not poll every job within an interval (one replica
        under 200 changing jobs) saw fewer of the intermediate states, told fewer changes (many: 494 notifications
        against three replicas' 546, on the same seed) and was compared on less work."""
        pids = [child.process.pid for child in self.replicas]
        taken_before = await db.takeovers() if db is not None else None
        xacts_before = 0
        if db is not None:
            xacts_before = await db.settled(stopped=False) if pause else await db.transactions()
        stats_before, arrivals_before = await self.sim.stats(), await self.receiver.count()
        switches_before = [switches(pid) for pid in pids]
        cpu_before, started = [cpu_s(pid) for pid in pids], time.monotonic()
        moved_at = stats_before["requests"]
        for _ in range(intervals):
            if advance:
                running = self.polled_at_rest - await self.sim.terminal_ids()
                moved_at = (await self.sim.stats())["requests"]
                await self.sim.advance(self.advance_ms)
            await asyncio.sleep(POLL_INTERVAL_S)
            if advance:
                await self._polled_since(moved_at, running, time.monotonic() + ABSORB_DEADLINE_S)
        if absorbed:
            await self._absorbed(stats_before["requests"], moved_at, arrivals_before, expected)
        cpu = [cpu_s(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
        switched = [
            (after[0] - before[0], after[1] - before[1])
            for after, before in zip((switches(pid) for pid in pids), switches_before, strict=True)
        ]
        elapsed_s, stats_after = time.monotonic() - started, await self.sim.stats()
        await asyncio.sleep(POLL_INTERVAL_S)  # the last move's polls and notifications
        arrivals = await self.receiver.arrivals(arrivals_before)
        if pause:
            self.pause()
        taken = (await db.takeovers()) - taken_before if taken_before is not None else None
        xacts = None
        if db is not None:
            xacts_after = await db.settled(stopped=True) if pause else await db.transactions()
            xacts = xacts_after - xacts_before - db.own_reads
        requests = stats_after["requests"] - stats_before["requests"]
        lines, _ = await self.sim.requests_since(stats_before["requests"])
        # None: the simulator's log (REQUEST_LOG_SIZE lines) no longer holds the window's first requests
        kinds = request_kinds(lines[:requests]) if len(lines) >= requests else None
        return {
            "seconds": round(elapsed_s, 2),
            "cpu_s": [round(s, 3) for s in cpu],
            "requests": requests,
            "requests_by_kind": kinds,
            "served_from": stats_before["requests"],
            "bytes": stats_after["response_bytes"] - stats_before["response_bytes"],
            "changed_jobs": len({arrival.job_id for arrival in arrivals}),
            "changed_ids": sorted({arrival.job_id for arrival in arrivals}),
            "notifications": len(arrivals),
            "transactions": xacts,
            "takeovers": taken,  # leases taken in the window (jobs finishing move the shares a little)
            # every replica together: wake-ups (and turns taken away), and moves to another CPU
            "context_switches": sum(each[0] for each in switched),
            "migrations": sum(each[1] for each in switched),
        }

    async def _polled_since(self, moved_at: int, jobs: set[str], deadline: float) -> None:
        """Wait until each of `jobs` has been polled since the request count was `moved_at` (the clock's last move),
        until `deadline` (`time.monotonic()`) at most."""
        lines, seen = await self.sim.requests_since(moved_at)
        polled = polled_jobs(lines)
        while not jobs <= polled:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(jobs - polled)} jobs not polled after the clock's last move")
            await asyncio.sleep(0.1)
            lines, seen = await self.sim.requests_since(seen)
            polled |= polled_jobs(lines)

    async def _absorbed(self, served_from: int, moved_at: int, arrivals_before: int, expected: frozenset[str]) -> None:
        """Wait until every job polled in the window and still running has been polled again since the clock last
        moved (its last changes seen), every job in `expected` has been told of, and then no notification has
        arrived for `QUIET_S` (`ABSORB_DEADLINE_S` at most in all)."""
        deadline = time.monotonic() + ABSORB_DEADLINE_S
        lines, _ = await self.sim.requests_since(served_from)
        # the jobs still running: a job that finished before the last move rests and is not polled again
        running = polled_jobs(lines[: max(0, moved_at - served_from)]) - await self.sim.terminal_ids()
        await self._polled_since(moved_at, running, deadline)
        # The same changes told of the same jobs (`expected`: those another setup told of in its window)
        while not expected <= {arrival.job_id for arrival in await self.receiver.arrivals(arrivals_before)}:
            if time.monotonic() > deadline:
                raise RuntimeError("the jobs told of by the other setup were not all told of here")
            await asyncio.sleep(0.25)
        count, quiet_since = await self.receiver.count(), time.monotonic()
        while time.monotonic() - quiet_since < QUIET_S:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the changes were not absorbed within {ABSORB_DEADLINE_S:g}s")
            await asyncio.sleep(0.25)
            now = await self.receiver.count()
            if now != count:
                count, quiet_since = now, time.monotonic()


@contextlib.asynccontextmanager
async def bench_for(workload: Workload) -> AsyncIterator[Bench]:
    """The simulator with the workload's jobs and the webhook receiver, each in its own process."""
    async with contextlib.AsyncExitStack() as stack:
        sim_child = await start_simulator(workload.seed)
        stack.push_async_callback(sim_child.stop)
        hook_child = await start_child(["-m", "benchmarks.hookrecv", "--port", "{port}"], ready_path="/ready")
        stack.push_async_callback(hook_child.stop)
        session = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900)))
        sim = SimControl(session, sim_child.url)
        for batch in workload.batches:
            await sim.add_workload(batch)
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="benchwatch-ha-")))
        bench = Bench(workload, sim, ReceiverClient(session, hook_child.url), folder)
        stack.push_async_callback(bench.stop_replicas)
        yield bench


async def unchanged_vs_parse(bench: Bench, windows: Windows, db: Database | None) -> dict[str, Any]:
    """One replica at rest: its whole-process CPU against `orjson.loads` of the bytes it fetched meanwhile."""
    window = await bench.window(windows.unchanged, advance=False, db=db)
    lines, _ = await bench.sim.requests_since(window["served_from"])  # the window's own requests, not later ones
    floor = await measure_floor(bench.sim.session, bench.sim.base_url, lines[: window["requests"]])
    parse_s = floor.parse_s * window["bytes"] / floor.bytes if floor.bytes else 0.0
    # What any poller pays to receive the same responses with aiohttp (the floor's own GETs, scaled the same way):
    # where it alone exceeds the target, no HTTP poller can meet it.
    receive_s = floor.recv_cpu_s * window["bytes"] / floor.bytes if floor.bytes else 0.0
    # /proc counts CPU in clock ticks (10 ms): a window that used none was not measured, it was not free.
    ratio = window["cpu_s"][0] / parse_s if parse_s and window["cpu_s"][0] else None
    return {
        **window,
        "orjson_loads_s": round(parse_s, 4),
        "cpu_vs_orjson": ratio,
        "receive_s": round(receive_s, 4),
        "receive_vs_orjson": receive_s / parse_s if parse_s else None,
    }


def _request(line: str) -> tuple[str, str]:
    """A simulator request-log line's method and path (without its query string)."""
    method, target = line.split(" ", 1)
    return method, target.split("?", 1)[0]


def polled_jobs(lines: list[str]) -> set[str]:
    """Job ids GET-ed in these simulator request-log lines."""
    jobs = set()
    for line in lines:
        _, path = _request(line)
        if path.startswith(JOB_PATH) and "/" not in path[len(JOB_PATH) :]:
            jobs.add(path[len(JOB_PATH) :])
    return jobs


def request_kinds(lines: list[str]) -> dict[str, int]:
    """How many of these request-log lines were of each endpoint (ids left out: `GET /v1/benchmark_jobs/{id}`);
    where one setup's extra requests go."""
    kinds: collections.Counter[str] = collections.Counter()
    for line in lines:
        method, path = _request(line)
        parts = path.strip("/").split("/")
        kinds[
            " ".join((method, "/" + "/".join("{id}" if index == 2 else part for index, part in enumerate(parts))))
        ] += 1
    return dict(sorted(kinds.items()))


async def running(sim: SimControl, job_ids: set[str]) -> set[str]:
    """Those of `job_ids` not in a terminal state, asked of the API (before the kill: these GETs are not polls)."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    found = set()
    for job_id in job_ids:
        async with sim.session.get(f"{sim.base_url}{JOB_PATH}{job_id}", headers=headers) as response:
            if (await response.json()).get("state") not in JobState.TERMINAL:
                found.add(job_id)
    return found


async def _victim(bench: Bench, db: Database) -> tuple[int, set[str]] | None:
    """The replica holding the most running jobs, and those jobs (recently polled and not terminal)."""
    holders = await db.holders()
    recent = await running(bench.sim, polled_jobs(await bench.sim.last_requests(LOG_SIZE)) & set(holders))
    by_pid: dict[int, set[str]] = {}
    for job_id in recent:
        by_pid.setdefault(int(holders[job_id].split(":")[1]), set()).add(job_id)
    return max(by_pid.items(), key=lambda item: len(item[1])) if by_pid else None


async def failover(bench: Bench, db: Database) -> dict[str, Any]:
    """`kill -9` the replica holding the most running jobs; seconds until another has polled every one of them."""
    chosen = await _victim(bench, db)
    if chosen is None:
        return {"jobs": 0, "unpolled": 0, "seconds": None, "bound_s": FAILOVER_BOUND_S}
    victim_pid, pending = chosen
    victim = next(child for child in bench.replicas if child.process.pid == victim_pid)
    jobs = len(pending)
    killed_s, killed_ms = time.monotonic(), int(time.time() * 1000)
    victim.process.send_signal(signal.SIGKILL)
    await victim.process.wait()
    # Requests from here on are the survivors' (they take nothing over before the victim's leases expire).
    served_at_kill = (await bench.sim.stats())["requests"]
    polled_s = await _until_polled(
        bench.sim, db, pending, killed_s=killed_s, killed_ms=killed_ms, served_at_kill=served_at_kill
    )
    seconds = None if len(polled_s) < jobs else round(max(polled_s.values()), 2)
    return {"jobs": jobs, "unpolled": jobs - len(polled_s), "seconds": seconds, "bound_s": FAILOVER_BOUND_S}


async def _until_polled(
    sim: SimControl, db: Database, pending: set[str], *, killed_s: float, killed_ms: int, served_at_kill: int
) -> dict[str, float]:
    """Per job, seconds from the kill to its first poll by another replica: a GET of the job in the simulator's
    request log (read every 50 ms), or a commit of its memory (`jobs.updated_ms`, the poll's own time) — a job
    taken over is polled from a list page when discovery finds it unknown to its new holder, without a GET."""
    polled_s: dict[str, float] = {}
    seen = served_at_kill
    async with await psycopg.AsyncConnection.connect(db.url, autocommit=True) as conn:
        while len(polled_s) < len(pending) and time.monotonic() - killed_s < FAILOVER_DEADLINE_S:
            await asyncio.sleep(0.05)
            lines, seen = await sim.requests_since(seen)  # every request once, however many arrive meanwhile
            for job_id in polled_jobs(lines) & pending:
                polled_s.setdefault(job_id, time.monotonic() - killed_s)
            cursor = await conn.execute(
                "SELECT job_id, updated_ms FROM jobs WHERE job_id = ANY(%s) AND updated_ms >= %s",
                (sorted(pending), killed_ms),
            )
            for job_id, updated_ms in await cursor.fetchall():
                polled_s[job_id] = min(polled_s.get(job_id, FAILOVER_DEADLINE_S), (updated_ms - killed_ms) / 1000)
    return polled_s


async def measure(workload: Workload, windows: Windows) -> dict[str, Any]:
    """One workload: SQLite on one process; then PostgreSQL, one replica on one simulator and three on another
    started with the same seed, their changed windows alternated (`_changed_rounds`); then the failover."""
    async with bench_for(workload) as one, bench_for(workload) as three, bench_for(workload) as shards:
        for bench in (one, three, shards):
            bench.advance_ms = min(workload.advance_ms, QUICK_ADVANCE_MS)
        sqlite_config = one.config(f"{{path: '{one.folder / 'state.db'}'}}", "sqlite")
        progress(f"{workload.name}: SQLite, one process")
        await one.start_replicas(sqlite_config, 1)
        await one.settle()
        figures: dict[str, Any] = {"sqlite_unchanged": await unchanged_vs_parse(one, windows, None)}
        await one.stop_replicas()
        async with contextlib.AsyncExitStack() as stack:
            db_one = await stack.enter_async_context(_database(workload, "one"))
            db_three = await stack.enter_async_context(_database(workload, "three"))
            shard_dbs = [await stack.enter_async_context(_database(workload, f"shard{i}")) for i in range(3)]
            progress(f"{workload.name}: PostgreSQL, 1 replica")
            await one.start_replicas(one.config(_pg_state(db_one), "postgres"), 1)
            await one.settle()
            figures["postgres_unchanged"] = await unchanged_vs_parse(one, windows, db_one)
            one.pause()
            progress(f"{workload.name}: PostgreSQL, 3 replicas (a simulator of their own, the same seed)")
            await three.start_replicas(three.config(_pg_state(db_three), "postgres"), 3)
            await three.settle()
            three.pause()
            progress(
                f"{workload.name}: PostgreSQL, 3 shards (each its own jobs and database; a simulator of their own)"
            )
            await shards.start_shards([_pg_state(db) for db in shard_dbs])
            await shards.settle()
            shards.pause()
            figures.update(
                await _changed_rounds(one, three, windows, (db_one, db_three), (shards, Databases(shard_dbs)))
            )
            await one.stop_replicas()
            await shards.stop_replicas()
            progress(f"{workload.name}: kill -9 of one replica")
            figures["failover"] = await failover(three, db_three)
    return {"workload": workload.name, "title": workload.title, **figures}


def _pg_state(db: Database) -> str:
    return f"{{url: '{db.url}', lease_ttl: {LEASE_TTL_S}s}}"


async def _changed_rounds(
    one: Bench, three: Bench, windows: Windows, dbs: tuple[Database, Database], shards: tuple[Bench, Databases]
) -> dict[str, Any]:
    """Changed windows of one replica and of three, alternated — 1, 3, 1, 3, … — each setup paused (SIGSTOP) as
    its window ends (its transactions counted then: `Bench.window`'s `pause`) and while the other's runs, and
    settled again once resumed. The two simulators started with the same seed and their clocks move the same
    number of times from the same start, so the k-th window of each holds the very same changes; alternated, a
    drift of the machine between windows (the same process spent 14 to 20 s of CPU on the same changes in runs
    minutes apart) falls on both setups alike. The targets are judged on the rounds'
    totals (`replicas_1`, `replicas_3`); each round is kept too.

    A third setup runs in each round after those two: three shards (`Bench.start_shards`), each process watching a
    third of the jobs in a database of its own — no lease, no shared rule state, nothing between them. What three
    shards spend over one replica is what three processes cost on this machine for the same work with no
    coordination at all: the floor of `replicas_3` over `replicas_1`, measured beside it (`shards_3`)."""
    (db_one, db_three), (apart, db_apart) = dbs, shards
    rounds: list[dict[str, Any]] = []
    for index in range(windows.rounds):
        label = f"round {index + 1} of {windows.rounds}"
        three.pause()
        one.resume()
        await one.settle(db_one)
        progress(f"{one.workload.name}: changed window, 1 replica ({label})")
        solo = await one.window(windows.changed, advance=True, db=db_one, absorbed=True, pause=True)
        three.resume()
        await three.settle(db_three)
        progress(f"{three.workload.name}: changed window, 3 replicas ({label})")
        expected = frozenset(solo["changed_ids"])
        trio = await three.window(
            windows.changed, advance=True, db=db_three, absorbed=True, expected=expected, pause=True
        )
        apart.resume()
        await apart.settle(db_apart)
        progress(f"{apart.workload.name}: changed window, 3 shards ({label})")
        alone = await apart.window(
            windows.changed, advance=True, db=db_apart, absorbed=True, expected=expected, pause=True
        )
        rounds.append({"replicas_1": solo, "replicas_3": trio, "shards_3": alone})
    three.resume()
    await three.settle(db_three)  # the failover starts from three replicas at rest
    return {
        "rounds": rounds,
        **{key: pooled([each[key] for each in rounds]) for key in ("replicas_1", "replicas_3", "shards_3")},
    }


def pooled(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Several windows of one setup as one: their figures summed (each replica's CPU on its own; a job that
    changed in two windows counts in each)."""
    transactions = [window["transactions"] for window in windows]
    takeovers = [window.get("takeovers") for window in windows]
    kinds = [window.get("requests_by_kind") for window in windows]
    return {
        "seconds": round(sum(window["seconds"] for window in windows), 2),
        "cpu_s": [round(sum(each), 3) for each in zip(*(window["cpu_s"] for window in windows), strict=True)],
        "requests": sum(window["requests"] for window in windows),
        "requests_by_kind": None
        if None in kinds
        else dict(sum(map(collections.Counter, kinds), collections.Counter())),
        "bytes": sum(window["bytes"] for window in windows),
        "changed_jobs": sum(window["changed_jobs"] for window in windows),
        "notifications": sum(window["notifications"] for window in windows),
        "transactions": None if None in transactions else sum(transactions),
        "takeovers": None if None in takeovers else sum(takeovers),
        "context_switches": sum(window.get("context_switches", 0) for window in windows),
        "migrations": sum(window.get("migrations", 0) for window in windows),
    }


@contextlib.asynccontextmanager
async def _database(workload: Workload, name: str) -> AsyncIterator[Database]:
    """A database of the benchmark's own, dropped at the end even on failure."""
    db = Database(f"benchwatch_ha_{os.getpid()}_{workload.name}_{name}")
    await db.create()
    try:
        yield db
    finally:
        await db.drop()


async def run(*, quick: bool = False) -> dict[str, Any]:
    """`ha`: the `many` and `large` workloads (tiny ones with `quick`)."""
    windows = Windows(unchanged=2, changed=2, rounds=2) if quick else Windows(unchanged=5, changed=5, rounds=3)
    chosen = tuple(
        workload
        for workload in (workloads.many(quick), workloads.large(quick))
        if workload.name in os.environ.get("BENCH_HA_WORKLOADS", "many,large").split(",")
    )
    if quick:  # side by side: the quick run checks the harness within a minute, its figures mean little
        measured = await asyncio.gather(*(measure(workload, windows) for workload in chosen))
    else:
        measured = [await measure(workload, windows) for workload in chosen]
    results = {}
    for figures in measured:
        figures["targets"] = targets(figures)
        hatable.print_figures(figures)
        results[figures["workload"]] = figures
    return results


def targets(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target: the figure, its limit, the ratio to it, and whether it was met."""
    found = {
        "sqlite_unchanged_vs_orjson": (figures["sqlite_unchanged"]["cpu_vs_orjson"], UNCHANGED_VS_PARSE_TARGET),
        "postgres_unchanged_vs_orjson": (figures["postgres_unchanged"]["cpu_vs_orjson"], UNCHANGED_VS_PARSE_TARGET),
        "failover_s": (figures["failover"]["seconds"], FAILOVER_BOUND_S),
        "replicas_transactions_ratio": (hatable.replicas_ratio(figures, "transactions"), REPLICAS_TARGET),
        "replicas_cpu_ratio": (hatable.replicas_ratio(figures, "cpu"), REPLICAS_TARGET),
    }
    return {
        name: {
            "value": value,
            "limit": limit,
            "ratio": None if value is None else round(value / limit, 2),
            "met": value is not None and value <= limit,
        }
        for name, (value, limit) in found.items()
    }

"""`python -m benchmarks chaos`: the fault matrix against the real `benchwatch run` and the simulator.

Each row runs `benchwatch run` as a process against an in-process simulator (on an accelerated clock) and an
in-process webhook receiver, injects its faults, waits until every simulated job has finished and everything due
has arrived (or a deadline passed), and counts against what the jobs' final outcomes call for: notifications
expected, lost, duplicated (one notification id received twice), spurious (told but not called for, or one fact
told under two ids), and Python tracebacks in the watcher's log. Config fuzzing loads mutated configs in process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from benchmarks.configfuzz import fuzz
from benchmarks.simproc import free_port
from benchmarks.told import Key, expected_keys, keys_of
from watcher.core.clock import SystemClock
from watcher.simulator import Faults, RawJson, SimAgent, SimJobSpec, Simulator, create_app

API_KEY = "chaos-key"
GRACE_S = 10.0  # the watcher's stop grace (watcher.app.service.STOP_GRACE_S)
_WORLD_KEY: web.AppKey[list[Any]] = web.AppKey("chaos_world", list)
AGENTS = [SimAgent(name="alpha", pass_rate=0.7), SimAgent(name="beta", pass_rate=0.5)]


def _specs(prefix: str) -> list[SimJobSpec]:
    return [
        SimJobSpec(name=f"{prefix}-a", n_scenarios=6, agents=AGENTS, fail_rate=0.25, timeout_rate=0.1, init_s=10,
                   queue_s=5, concurrency=3, scenario_duration_s=(20, 60), scenario_timeout_s=75, run_linger_s=5),
        SimJobSpec(name=f"{prefix}-b", n_scenarios=4, agents=AGENTS[:1], fail_rate=0.3, n_attempts=1, init_s=10,
                   queue_s=5, concurrency=2, scenario_duration_s=(20, 50), scenario_timeout_s=75, run_linger_s=5),
        SimJobSpec(name=f"{prefix}-setup", n_scenarios=3, agents=AGENTS[:1], outcome="failed", end_after_s=60,
                   fail_rate=0.0, timeout_rate=0.0, init_s=10),
    ]  # fmt: skip


class HeldClock:
    """Simulated time that stands still until `release()`, then runs `speed` times faster than real time: the jobs
    wait, initializing, until the watcher knows each of them — so all they do is there to be told."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._origin_ms = SystemClock().now_ms()
        self._released_ns: int | None = None

    def now_ms(self) -> int:
        """The simulated time."""
        if self._released_ns is None:
            return self._origin_ms
        return self._origin_ms + int((time.monotonic_ns() - self._released_ns) / 1_000_000 * self.speed)

    def release(self) -> None:
        """Let time run."""
        if self._released_ns is None:
            self._released_ns = time.monotonic_ns()


@dataclass
class Row:
    """One line of the table."""

    name: str
    faults: int = 0
    expected: int = 0
    lost: int = 0
    duplicated: int = 0
    spurious: int = 0
    tracebacks: int = 0
    note: str = ""


class Receiver:
    """A webhook receiver that records each notification, and answers with faults at the shares it is given."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.payloads: list[dict[str, Any]] = []
        self.shares: dict[str, float] = {}  # "429", "500", "hang" → share of requests
        self.delay_s = 0.0
        self.faults = 0
        self.arrived = 0  # requests that reached the receiver (answered or not yet)
        self.rejected: list[dict[str, Any]] = []  # notifications answered 4xx: the watcher must dead-letter them
        self.headers: list[str] = []  # every request's header lines, for injected ones
        self.slack: list[dict[str, Any]] = []  # what the Slack (incoming webhook) fake received

    async def hook(self, request: web.Request) -> web.StreamResponse:
        """`POST /hook`."""
        body = json.loads(await request.read())
        self.arrived += 1
        self.headers.extend(_header_lines(request))
        fault = self._draw()
        if fault == "400":  # a permanent refusal: dead-lettered, never retried
            self.faults += 1
            self.rejected.append(body)
            return web.Response(status=400)
        if fault == "hang":  # past the notifier's timeout (2 s): it gave up; the answer goes nowhere, unrecorded
            self.faults += 1
            await asyncio.sleep(5)
            return web.Response(status=504)
        if fault in ("429", "500"):
            self.faults += 1
            return web.Response(status=int(fault), headers={"Retry-After": "1"} if fault == "429" else None)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.payloads.append(body)
        return web.Response(status=204)

    async def slack_hook(self, request: web.Request) -> web.StreamResponse:
        """`POST /slack`: a Slack incoming webhook."""
        self.slack.append(json.loads(await request.read()))
        self.headers.extend(_header_lines(request))
        return web.Response(text="ok")

    def _draw(self) -> str | None:
        draw, edge = self.rng.random(), 0.0
        for name, share in self.shares.items():
            edge += share
            if draw < edge:
                return name
        return None


def _header_lines(request: web.Request) -> list[str]:
    return [f"{name.decode('latin-1')}: {value.decode('latin-1')}" for name, value in request.raw_headers]


@dataclass
class World:
    """The simulator, the receiver, their servers, and a folder for the watcher's config and state."""

    sim: Simulator
    clock: HeldClock
    receiver: Receiver
    api_url: str
    hook_url: str
    folder: Path
    runners: list[web.AppRunner] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    malformed: set[str] = field(default_factory=set)  # jobs served malformed: the watcher must tell nothing of them
    injected: int = 0  # faults of the row's own (hostile jobs, kills, stops)
    hostile_serving: bool = False  # the simulator's answers rewritten as a hostile API would
    hostile_answers: int = 0
    overflowing_scores: bool = False  # every average_score served as 1e400 (infinity to a JSON reader)
    served_ids: dict[str, str] = field(default_factory=dict)  # job id → the id a tampered view gives it

    def faults(self) -> int:
        """Faults injected: the row's own, the receiver's, and the API's (its fault rates × requests served)."""
        rates: dict[str, float] = self.sim.faults.model_dump(include=_RATES)
        return self.injected + self.receiver.faults + round(self.sim.requests_served * sum(rates.values()))

    def finished(self) -> bool:
        """Every simulated job has come to its end (whatever state a hostile API shows for it)."""
        now_ms = self.sim.clock.now_ms()
        return all(plan.end_ms is not None and plan.end_ms + 5_000 <= now_ms for plan in self.sim.jobs())

    def expected(self) -> Counter[Key]:
        """One notification per finished job, finished run, failed or timed-out scenario (by final outcomes)."""
        return expected_keys(self.sim, skip=self.malformed)

    def refused(self) -> Counter[Key]:
        """What the receiver refused with a 4xx: dead-lettered, not to arrive."""
        return Counter(key for payload in self.receiver.rejected for key in keys_of(payload))

    def received(self) -> tuple[Counter[Key], int]:
        """What arrived (each notification id counted once), and how many arrivals repeated an id."""
        seen: set[str] = set()
        keys: Counter[Key] = Counter()
        for payload in self.receiver.payloads:
            if payload["id"] in seen:
                continue
            seen.add(payload["id"])
            keys.update(keys_of(payload))
        return keys, len(self.receiver.payloads) - len(seen)

    async def add_jobs(self) -> None:
        """Create the chaos jobs (their time stands still until `release`)."""
        for spec in _specs("chaos"):
            self.sim.add_job(spec)

    async def release(self) -> None:
        """Start the jobs' time once the watcher has polled each well-formed one on its own."""

        def known() -> bool:
            polled = " ".join(line for line in self.sim.request_log if line.startswith("GET /v1/benchmark_jobs/"))
            return all(
                f"/{self.served_ids.get(plan.job_id, plan.job_id).replace('.', '%2E')}" in polled
                for plan in self.sim.jobs()
                if plan.job_id not in self.malformed
            )

        await _until(known, 30)
        self.clock.release()

    def config(
        self,
        state_path: str = "./state.db",
        send_timeout: str = "2s",
        *,
        slack: bool = False,
        state_url: str | None = None,
        name: str = "benchwatch.yaml",
        poll_timeout: str = "1m",
    ) -> Path:
        """The watcher's config file (`slack`: finished jobs also go to the Slack fake; `state_url`: replicas on
        that PostgreSQL database instead of the SQLite file)."""
        path = self.folder / name
        state = f"url: '{state_url}'" if state_url else f"path: '{state_path}'"
        slack_url = self.hook_url.removesuffix("/hook") + "/slack"
        extra = (
            f"  slack: {{type: slack, webhook_url: '{slack_url}'}}\n" if slack else "",
            "  - {name: finished-slack, on: job.finished, notify: slack}\n" if slack else "",
        )
        path.write_text(
            f"runloop: {{base_url: '{self.api_url}', api_key: {API_KEY}}}\n"
            "watch: {discover: {name: 'chaos-*'}, poll_interval: 1s, scenario_runs: true, stall_after: 1h,"
            f" api_unreachable_after: 1h, poll_timeout: {poll_timeout}}}\n"
            f"state: {{{state}}}\nhttp: {{enabled: false}}\n"
            f"notifiers:\n  hook: {{type: webhook, url: '{self.hook_url}', concurrency: 2, timeout: {send_timeout}}}\n"
            f"{extra[0]}rules:\n{extra[1]}"
            "  - {name: finished, on: job.finished, notify: hook}\n"
            "  - {name: runs, on: run.finished, notify: hook}\n"
            "  - {name: failures, on: [scenario.failed, scenario.timed_out], notify: hook, group_by: [event.id]}\n"
        )
        return path

    async def close(self) -> None:
        """Stop the servers and remove the folder."""
        for runner in self.runners:
            await runner.cleanup()
        shutil.rmtree(self.folder, ignore_errors=True)


async def _serve(app: web.Application, world_runners: list[web.AppRunner]) -> str:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    world_runners.append(runner)
    return f"http://127.0.0.1:{port}"


async def make_world(seed: int, speed: float) -> World:
    """A simulator on an accelerated clock (its jobs come with `add_jobs`) and a receiver, both served locally."""
    clock = HeldClock(speed)
    sim = Simulator(seed=seed, clock=clock, api_key=API_KEY)
    receiver = Receiver(random.Random(seed))
    runners: list[web.AppRunner] = []
    sim_app = create_app(sim)
    sim_app.middlewares.append(_hostile_middleware)
    sim_app[_WORLD_KEY] = []  # the world, once made
    api_url = await _serve(sim_app, runners)
    hook_app = web.Application()
    hook_app.router.add_post("/hook", receiver.hook)
    hook_app.router.add_post("/slack", receiver.slack_hook)
    hook_url = await _serve(hook_app, runners) + "/hook"
    folder = Path(tempfile.mkdtemp(prefix="benchwatch-chaos-"))
    world = World(sim, clock, receiver, api_url, hook_url, folder, runners)
    sim_app[_WORLD_KEY].append(world)
    return world


async def start_watcher(world: World, config_name: str = "benchwatch.yaml") -> asyncio.subprocess.Process:
    """`benchwatch run` on the world's config (`config_name` in its folder), its stderr kept for the traceback
    count."""
    config = world.folder / config_name
    if not config.exists():
        world.config()
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "watcher", "run", "--config", str(config), cwd=world.folder,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


async def finish(process: asyncio.subprocess.Process, world: World, *, kill: bool = False) -> float:
    """Stop the watcher (SIGTERM, or SIGKILL); keep its log; returns how long it took to exit."""
    started = time.monotonic()
    process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    _, err = await asyncio.wait_for(process.communicate(), timeout=GRACE_S + 20)
    world.logs.append(err.decode(errors="replace"))
    return time.monotonic() - started


async def settle(world: World, deadline_s: float) -> None:
    """Wait until every job finished and what is expected arrived (or was refused for good), or the deadline
    passed."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if world.finished() and world.received()[0] + world.refused() == world.expected():
            return
        await asyncio.sleep(0.2)


def tally(row: Row, world: World) -> Row:
    """Fill a row's counts from what the world expected and received."""
    expected = world.expected()
    received, duplicated = world.received()
    row.expected = sum(expected.values())
    row.lost = sum((expected - received).values())
    row.spurious = sum((received - expected).values())
    row.duplicated = duplicated
    row.tracebacks = sum(log.count("Traceback (most recent call last)") for log in world.logs)
    row.faults = world.faults()
    return row


# -- the rows ------------------------------------------------------------------------------------------------------


async def row_plain(seed: int, name: str, setup: Callable[[World], None] | None = None, speed: float = 30) -> Row:
    """One watcher run from start to end, with whatever faults `setup` switches on."""
    world = await make_world(seed, speed)
    try:
        process = await start_watcher(world)
        await world.add_jobs()
        if setup is not None:
            setup(world)
        await world.release()
        await settle(world, 40)
        await finish(process, world)
        return tally(Row(name), world)
    finally:
        await world.close()


_RATES = {"rate_429", "rate_500", "rate_503", "rate_truncated", "rate_malformed"}


def _api_faults_at(rate: float) -> Callable[[World], None]:
    share = rate / 5
    return lambda world: world.sim.set_faults(
        Faults(rate_429=share, rate_500=share, rate_503=share, rate_truncated=share, rate_malformed=share,
               retry_after_s=0.2)
    )  # fmt: skip


def _hostile(world: World) -> None:
    """Hostile data on extra jobs: a null name, a wrong type, unknown states, huge and negative numbers, 10k-char
    strings, mention and header-injection strings. Real jobs beside them must be told exactly."""
    specs: dict[str, dict[str, Any]] = {
        "chaos-x-null": {"name": None},
        "chaos-x-type": {"create_time_ms": "yesterday"},
        "chaos-x-state": {"state": "exploding"},
        "chaos-x-huge": {"job_spec": {"scenario_ids": ["s"] * 3}, "name": "chaos-x-huge-" + "x" * 10_000},
        "chaos-x-inject": {"name": "chaos-x-<!channel> @here\r\nBcc: a@b.c"},
    }
    for name, fields in specs.items():
        spec = SimJobSpec(name=name, n_scenarios=2, agents=AGENTS[:1], init_s=10, fail_rate=0.0, timeout_rate=0.0)
        plan = world.sim.add_job(spec)
        world.sim.tamper(plan.job_id, fields)
        if name in ("chaos-x-null", "chaos-x-type"):
            world.malformed.add(plan.job_id)
    world.injected += len(specs)


_MENTION = "chaos-y-<!channel> <!everyone> @everyone <@U0123>\r\nX-Injected: 1"
_RAW_MARKERS = ("<!channel>", "<!everyone>", "<@U0123>", "\r", "\nX-Injected")


def _hostile_more(world: World) -> None:
    """The rest of the hostile data: the API lists each job twice, serves the real jobs' counters huge, negative
    and going back, durations and times negative or absurd, scenario and run states nobody knows; more jobs with
    mention and header-injection names (to a Slack fake as well) and a 10,000-character failure reason."""
    world.config(slack=True)
    specs: dict[str, dict[str, Any]] = {
        "chaos-y-mention": {"name": _MENTION},
        "chaos-y-reason": {"failure_reason": "r" * 10_000 + "\r\nX-Injected: 1 <!channel>"},
    }
    for name, fields in specs.items():
        spec = SimJobSpec(name=name, n_scenarios=2, agents=AGENTS[:1], init_s=10, outcome="failed", end_after_s=40,
                          fail_rate=0.0, timeout_rate=0.0)  # fmt: skip
        world.sim.tamper(world.sim.add_job(spec).job_id, fields)
    world.injected += len(specs)
    world.hostile_serving = True


def _hostile_bytes(world: World) -> None:
    """Bytes no JSON reader takes, in three more jobs (invalid UTF-8, a lone surrogate, nesting 1,000 deep): each
    must cost that job only. A job whose id is `..` (a dot segment to a URL); one whose GET trickles at 20 bytes/s
    (its polls must hold no other job's, each cut at `poll_timeout`); every average_score served as 1e400."""
    world.config(poll_timeout="2s")
    specs: dict[str, dict[str, Any]] = {
        "chaos-z-utf8": {"notes": RawJson(b'"caf\xe9"')},
        "chaos-z-surrogate": {"notes": "\ud83d"},
        "chaos-z-deep": {"notes": RawJson(b"[" * 1000 + b"]" * 1000)},
        "chaos-z-dots": {"id": ".."},
        "chaos-z-slow": {},
    }
    for name, fields in specs.items():
        spec = SimJobSpec(name=name, n_scenarios=2, agents=AGENTS[:1], init_s=10, fail_rate=0.5, timeout_rate=0.0)
        plan = world.sim.add_job(spec)
        world.sim.tamper(plan.job_id, fields)
        if name in ("chaos-z-utf8", "chaos-z-surrogate", "chaos-z-deep"):
            world.malformed.add(plan.job_id)  # rejected, reported once: nothing of it can be told
        elif name == "chaos-z-dots":
            world.served_ids[plan.job_id] = ".."
        else:  # never answers in time: nothing of it is told after its discovery either
            world.sim.slow(plan.job_id, 20)
            world.malformed.add(plan.job_id)
    world.injected += len(specs)
    world.overflowing_scores = True


_AVERAGE_SCORE = re.compile(rb'"average_score":-?[0-9][0-9.eE+-]*')


@web.middleware
async def _hostile_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Rewrites the simulator's job answers as a hostile API would (when the world asks for it)."""
    response = await handler(request)
    world: World | None = request.app[_WORLD_KEY][0] if request.app[_WORLD_KEY] else None
    if world is not None and world.overflowing_scores:
        response = _overflowed(world, response)
    served = world is not None and world.hostile_serving and request.path.startswith("/v1/benchmark_jobs")
    if not served or not isinstance(response, web.Response) or response.status != 200 or response.body is None:
        return response
    assert world is not None
    body = json.loads(bytes(response.body))  # type: ignore[arg-type]
    world.hostile_answers += 1
    if isinstance(body.get("jobs"), list):  # the list: every job twice
        body["jobs"] = [_hostile_job(job, world.hostile_answers) for job in body["jobs"] for _ in range(2)]
        world.injected += len(body["jobs"]) // 2
    elif "benchmark_outcomes" in body:
        body = _hostile_job(body, world.hostile_answers)
    return web.json_response(body)


def _overflowed(world: World, response: web.StreamResponse) -> web.StreamResponse:
    """The answer with every average_score 1e400: a valid JSON number, infinity to a JSON reader."""
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        return response
    body, count = _AVERAGE_SCORE.subn(b'"average_score":1e400', response.body)
    world.injected += count
    return web.Response(body=body, status=response.status, content_type="application/json") if count else response


def _hostile_job(job: dict[str, Any], turn: int) -> dict[str, Any]:
    """Counters huge and negative on one answer, gone back to zero on the next, true on the third; durations and
    start times absurd; completed scenarios and running runs in states nobody knows."""
    job = json.loads(json.dumps(job))
    for outcome in job.get("benchmark_outcomes") or []:
        if turn % 3 == 0:
            outcome.update(n_completed=10**15, n_failed=-7, n_timeout=-(10**12), duration_ms=-1, average_score=1e308)
        elif turn % 3 == 1:
            outcome.update(n_completed=0, n_failed=0, n_timeout=0)
        for scenario in outcome.get("scenario_outcomes") or []:
            if scenario.get("state") == "COMPLETED":
                scenario["state"] = "VAPORIZED"
                scenario["duration_ms"] = -(10**18)
    for run in job.get("in_progress_runs") or []:
        run.update(state="melting", duration_ms=-5, start_time_ms=10**18)
    return job


def _strings(value: Any) -> list[str]:
    """Every string in a JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [text for item in value for text in _strings(item)] if isinstance(value, list) else []


def _unescaped(world: World) -> int:
    """Mentions, CR or an injected header that reached a receiver raw: in a Slack message, or in any header."""
    raw = [marker for text in _strings(world.receiver.slack) for marker in _RAW_MARKERS if marker in text]
    headers = [line for line in world.receiver.headers if "X-Injected" in line or "<!" in line]
    return len(raw) + len(headers)


def _receiver_faults(world: World) -> None:
    world.receiver.shares = {"429": 0.2, "500": 0.2, "hang": 0.1}


async def row_kill_loop(seed: int, kills: int) -> Row:
    """`kill -9` at random moments, then a restart, `kills` times; then run to the end."""
    world = await make_world(seed, 20)
    rng = random.Random(seed)
    try:
        for index in range(kills):
            process = await start_watcher(world)
            if index == 0:
                await world.add_jobs()
                await world.release()
            await asyncio.sleep(rng.uniform(1.0, 2.5))
            await finish(process, world, kill=True)
        process = await start_watcher(world)
        await settle(world, 40)
        await finish(process, world)
        world.injected += kills
        row = tally(Row(f"kill -9 x{kills}"), world)
        row.note = f"duplicates allowed: sends in flight at a kill (concurrency 2 × {kills})"
        return row
    finally:
        await world.close()


async def row_sigterm_loop(seed: int, stops: int) -> Row:
    """SIGTERM 0.5 s after a send started, while a slow receiver (4 s per answer) holds sends in flight; each exit
    timed; then a run to the end."""
    world = await make_world(seed, 20)
    world.receiver.delay_s = 4.0
    world.config(send_timeout="8s")  # longer than an answer: a timed-out send the receiver still took is a repeat
    slowest_s = 0.0
    try:
        for index in range(stops):
            process = await start_watcher(world)
            if index == 0:
                await world.add_jobs()
                await world.release()
            arrived = world.receiver.arrived
            await _until(lambda: world.receiver.arrived > arrived, 30)  # noqa: B023 -- awaited in this iteration
            await asyncio.sleep(0.5)
            slowest_s = max(slowest_s, await finish(process, world))
        process = await start_watcher(world)
        await settle(world, 60)
        await finish(process, world)
        world.injected += stops
        row = tally(Row(f"SIGTERM x{stops}, receiver 4 s/answer"), world)
        row.note = f"slowest exit {slowest_s:.1f}s (bound: grace {GRACE_S:g}s + 1s)"
        return row
    finally:
        await world.close()


async def row_hostile_more(seed: int, speed: float = 30) -> Row:
    """Hostile data beyond the first row's, with what the Slack fake and every header received checked for
    mentions, CR and injected headers."""
    world = await make_world(seed, speed)
    try:
        _hostile_more(world)
        process = await start_watcher(world)
        await world.add_jobs()
        await world.release()
        await settle(world, 40)
        finished = sum(1 for plan in world.sim.jobs() if plan.end_ms is not None)
        await _until(lambda: len(world.receiver.slack) >= finished, 15)
        await finish(process, world)
        row = tally(Row("hostile API data II"), world)
        unescaped = _unescaped(world)
        row.spurious += unescaped  # a mention or a header that reached a receiver raw is told wrong
        row.note = f"{len(world.receiver.slack)}/{finished} Slack messages, {unescaped} raw mentions/CR/headers"
        return row
    finally:
        await world.close()


async def row_receiver_4xx(seed: int) -> Row:
    """30 % of sends answered 400: each such notification dead-lettered once (by design: counted dead, not lost),
    never retried; the dead letters read back with `benchwatch deliveries list --status dead`."""
    world = await make_world(seed, 30)
    world.receiver.shares = {"400": 0.3}
    try:
        process = await start_watcher(world)
        await world.add_jobs()
        await world.release()
        await settle(world, 40)
        await finish(process, world)
        dead = await _dead_letters(world)  # notification id → attempts
        row = tally(Row("receiver 4xx (30%)"), world)
        rejected = [payload["id"] for payload in world.receiver.rejected]
        row.lost = sum((world.expected() - world.received()[0] - world.refused()).values())
        retried = len(rejected) - len(set(rejected)) + len(set(rejected) & {p["id"] for p in world.receiver.payloads})
        retried += sum(attempts - 1 for attempts in dead.values())
        row.duplicated += retried
        row.spurious += len(set(dead) ^ set(rejected))  # dead-lettered but not refused, or refused but not dead
        row.note = f"{len(rejected)} answered 4xx = {len(dead)} dead letters ('deliveries list'); {retried} retried"
        return row
    finally:
        await world.close()


async def _dead_letters(world: World) -> dict[str, int]:
    """The dead letters `benchwatch deliveries list --status dead` shows: notification id → attempts."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "watcher", "deliveries", "list", "--status", "dead", "--limit", "1000",
        "--config", str(world.folder / "benchwatch.yaml"), cwd=world.folder,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    world.logs.append(err.decode(errors="replace"))
    dead: dict[str, int] = {}
    for line in out.decode(errors="replace").splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[1] == "dead":
            attempts = next(field for field in fields if field.startswith("attempts="))
            dead[fields[0]] = int(attempts.removeprefix("attempts="))
    return dead


async def row_corrupt_state(seed: int) -> Row:
    """A state file that is not a database: `run` must refuse it with one line, no traceback."""
    world = await make_world(seed, 30)
    try:
        (world.folder / "state.db").write_bytes(b"this is not an SQLite database" * 100)
        world.config()
        process = await start_watcher(world)
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
        world.logs.append(err.decode(errors="replace"))
        world.injected += 1
        row = tally(Row("corrupted state file"), world)
        row.expected = row.lost = row.spurious = 0  # nothing is to be told: it must refuse to start
        row.note = f"exit {process.returncode}: {err.decode(errors='replace').strip().splitlines()[-1][:70]}"
        return row
    finally:
        await world.close()


async def row_disk_full(seed: int) -> Row:
    """The state on a small tmpfs that fills up mid-run (a filler file), then frees again."""
    world = await make_world(seed, 20)
    mount = world.folder / "tmpfs"
    mount.mkdir()
    if await _command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)) != 0:
        await world.close()
        return Row("disk full (tmpfs)", note="skipped: cannot mount a tmpfs here (tests/test_disk_full.py covers it)")
    try:
        world.config(state_path=str(mount / "state.db"))
        process = await start_watcher(world)
        await world.add_jobs()
        await world.release()
        await _until(lambda: len(world.receiver.payloads) >= 3, 30)
        filler = mount / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as out:
            while True:
                out.write(b"\0" * 4096)
                out.flush()
        await asyncio.sleep(4)  # the watcher meets the full disk: it must hold, not lose or repeat
        filler.unlink()
        await settle(world, 40)
        await finish(process, world)
        world.injected += 1
        row = tally(Row("disk full (tmpfs), then space"), world)
        told = sum(log.count("state store cannot write") for log in world.logs)
        row.note = f"full for 4 s mid-run; {told} 'cannot write' log lines"
        return row
    finally:
        await _command("umount", "-l", str(mount))
        await world.close()


async def row_read_only_state(seed: int) -> Row:
    """The state folder on a read-only mount (root writes through chmod, so a read-only tmpfs): `run` must refuse
    it with one line and exit 2, no traceback. Not run, and said so, where the process cannot mount."""
    world = await make_world(seed, 30)
    mount = world.folder / "ro"
    mount.mkdir()
    name = "read-only state folder"
    if os.geteuid() != 0 or await _command("mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)) != 0:
        await world.close()
        return Row(name, note="not run here: needs root and mount")
    try:
        world.config(state_path=str(mount / "state.db"))
        process = await start_watcher(world)
        try:
            _, err = await asyncio.wait_for(process.communicate(), timeout=30)
        except TimeoutError:  # still running: the row fails, loudly
            await finish(process, world)
            return tally(Row(name, lost=1, note="still running after 30 s on a read-only state folder"), world)
        text = err.decode(errors="replace")
        world.logs.append(text)
        world.injected += 1
        row = tally(Row(name), world)
        row.expected = row.lost = row.spurious = 0  # nothing is to be told: it must refuse to start
        lines = text.strip().splitlines()
        row.lost = 0 if process.returncode == 2 and len(lines) == 1 else 1  # anything else fails the row
        row.note = f"exit {process.returncode}, {len(lines)} line(s): {(lines or [''])[-1][:90]}"
        return row
    finally:
        await _command("umount", "-l", str(mount))
        await world.close()


async def _command(*args: str) -> int:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await process.wait()


async def _until(condition: Callable[[], bool], deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.1)


async def row_config_fuzz(count: int) -> Row:
    """`count` mutated configs loaded in process: each accepted or a ConfigError, never a traceback."""
    with tempfile.TemporaryDirectory(prefix="benchwatch-fuzz-") as folder:
        report = fuzz(Path(folder), seed=1, count=count)
    note = f"{report.accepted} accepted, {report.rejected} rejected with file:line"
    return Row(f"config fuzzing x{count}", faults=count, tracebacks=len(report.crashes), note=note)


# -- the table -----------------------------------------------------------------------------------------------------


async def _passes(world: World, count: int, deadline_s: float = 30) -> None:
    """Wait until the watcher has started `count` more discovery passes (each begins with a list request)."""
    served_at = world.sim.requests_served

    def passes() -> int:
        new = world.sim.requests_served - served_at
        recent = list(world.sim.request_log)[-new:] if new > 0 else []
        return sum(1 for line in recent if line.startswith("GET /v1/benchmark_jobs?"))

    await _until(lambda: passes() >= count, deadline_s)


async def row_stopped_while_jobs_end(seed: int) -> Row:
    """The watcher is stopped while one job fails in setup and another completes with failures (and a third runs
    to its end): after the restart every failure is told exactly once (catch-up); then a fresh store on the same
    API tells none of the old jobs."""
    world = await make_world(seed, 60)
    try:
        process = await start_watcher(world)
        await _passes(world, 2)  # a fresh store: its first pass is the starting point, its watermark set
        await finish(process, world)
        world.clock.release()  # simulated time runs ahead of the watcher's: the jobs are created after its first pass
        await _until(lambda: world.sim.clock.now_ms() > SystemClock().now_ms() + 1000, 10)
        await world.add_jobs()
        await _until(world.finished, 60)  # every job ends while no watcher runs
        process = await start_watcher(world)
        await settle(world, 40)
        await finish(process, world)
        row = tally(Row("stopped while jobs end (catch-up)"), world)
        told = len(world.receiver.payloads)
        world.config(state_path="./fresh.db", name="fresh.yaml")
        fresh = await start_watcher(world, "fresh.yaml")
        await _passes(world, 3)
        await finish(fresh, world)
        row.spurious += len(world.receiver.payloads) - told
        row.tracebacks = sum(log.count("Traceback (most recent call last)") for log in world.logs)
        row.note = f"then a fresh store on the same API: {len(world.receiver.payloads) - told} notifications"
        return row
    finally:
        await world.close()


async def row_replica_killed_while_a_job_ends(seed: int) -> Row:
    """Two replicas on one PostgreSQL database; the one holding the jobs is `kill -9`ed as the first job ends and
    restarted a moment later: every failure is told, once (the in-flight window aside)."""
    world = await make_world(seed, 20)
    database = f"bw_chaos_{random.Random(seed).getrandbits(48):012x}"
    try:
        url = _create_database(database)
    except Exception as exc:  # no PostgreSQL here: the row says so instead of failing the matrix
        await world.close()
        return Row("replica killed while a job ends", note=f"skipped: no PostgreSQL ({type(exc).__name__})")
    try:
        world.config(state_url=url, name="a.yaml")
        world.config(state_url=url, name="b.yaml")
        replicas = [await start_watcher(world, "a.yaml"), await start_watcher(world, "b.yaml")]
        await world.add_jobs()
        await world.release()
        first_end = min(plan.end_ms or 0 for plan in world.sim.jobs())
        await _until(lambda: world.sim.clock.now_ms() >= first_end, 60)
        await finish(replicas[0], world, kill=True)
        world.injected += 1
        await _passes(world, 1)
        replicas[0] = await start_watcher(world, "a.yaml")
        await settle(world, 60)
        for process in replicas:
            await finish(process, world)
        row = tally(Row("replica killed while a job ends"), world)
        row.note = "duplicates allowed: sends in flight at the kill"
        return row
    finally:
        await world.close()
        _drop_database(database)


_POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _create_database(name: str) -> str:
    import psycopg  # only this row needs it

    with psycopg.connect(_POSTGRES_ADMIN, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    return _POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def _drop_database(name: str) -> None:
    import psycopg

    with contextlib.suppress(psycopg.Error), psycopg.connect(_POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def matrix(quick: bool) -> list[Callable[[], Awaitable[Row]]]:
    """The rows to run: all of them, or (quick) a few that fit in the test suite."""
    if quick:
        return [lambda: row_plain(3, "API faults 20%", _api_faults_at(0.2), speed=90)]
    return [
        lambda: row_plain(1, "baseline (no faults)"),
        lambda: row_plain(2, "API faults 10%", _api_faults_at(0.1)),
        lambda: row_plain(3, "API faults 30%", _api_faults_at(0.3)),
        lambda: row_plain(4, "hostile API data", _hostile),
        lambda: row_hostile_more(10),
        lambda: row_plain(13, "hostile API data III", _hostile_bytes),
        lambda: row_plain(5, "receiver 429/500/hang", _receiver_faults),
        lambda: row_receiver_4xx(11),
        lambda: row_kill_loop(6, 3),
        lambda: row_sigterm_loop(7, 2),
        lambda: row_stopped_while_jobs_end(13),
        lambda: row_replica_killed_while_a_job_ends(14),
        lambda: row_disk_full(8),
        lambda: row_corrupt_state(9),
        lambda: row_read_only_state(12),
        lambda: row_config_fuzz(1000),
    ]


def render(rows: list[Row]) -> str:
    """The table, as printed."""
    head = f"{'row':34} {'faults':>6} {'expected':>8} {'lost':>4} {'dup':>4} {'spurious':>8} {'tracebacks':>10}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.name:34} {r.faults:>6} {r.expected:>8} {r.lost:>4} {r.duplicated:>4} {r.spurious:>8} "
            f"{r.tracebacks:>10}  {r.note}"
        )
    return "\n".join(lines)


async def run(*, quick: bool = False) -> dict[str, Any]:
    """The benchmark entry point: run the matrix, print the table, return the rows."""
    rows = []
    for make_row in matrix(quick):
        started = time.monotonic()
        row = await make_row()
        row.note = f"{row.note} ({time.monotonic() - started:.0f}s)".strip()
        rows.append(row)
        print(render(rows).splitlines()[-1], flush=True)
    print(render(rows))
    return {"rows": [vars(row) for row in rows]}

"""End to end: the simulator, `benchwatch run` as a subprocess, and local receivers.

A full lifecycle yields the expected notifications; kill -9 in the middle and a restart lose none and repeat only
sends in flight; API faults switched on change nothing in what arrives. Expected notifications come from the
simulated jobs' own final outcomes, so the runs compare by content, not by timing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.webhook import WebhookReceiver
from watcher.core.clock import ScaledClock
from watcher.simulator import Faults, SimAgent, SimJobSpec, Simulator, create_app

SECRET = "whsec_ZTJlLXRlc3Qtc2VjcmV0LWZvci1iZW5jaHdhdGNo"
SPEED = 120.0
CONCURRENCY = 4
AGENTS = [SimAgent(name="alpha", model_name="m1", pass_rate=0.7), SimAgent(name="beta", model_name="m2", pass_rate=0.5)]
SPECS = [
    SimJobSpec(name="e2e-complete", n_scenarios=6, agents=AGENTS, fail_rate=0.25, timeout_rate=0.1, init_s=240,
               scenario_duration_s=(60, 240), scenario_timeout_s=300),
    SimJobSpec(name="e2e-setup-fails", n_scenarios=4, agents=AGENTS[:1], outcome="failed", end_after_s=200,
               fail_rate=0.0, timeout_rate=0.0, init_s=240),
]  # fmt: skip
Key = tuple[str, str, str, str]


def _config(folder: Path, api: str, hook: str, extra: str = "") -> Path:
    path = folder / "benchwatch.yaml"
    path.write_text(
        f"runloop: {{base_url: '{api}', api_key: e2e-key}}\n"
        "watch: {discover: {name: 'e2e-*'}, poll_interval: 1s, scenario_runs: true, stall_after: 1h}\n"
        "state: {path: ./state.db}\nhttp: {port: 0}\n"
        f"notifiers:\n  hook: {{type: webhook, url: '{hook}', secret: '{SECRET}', concurrency: {CONCURRENCY}}}\n"
        "rules:\n"
        "  - {name: finished, on: job.finished, notify: hook}\n"
        "  - {name: runs, on: run.finished, notify: hook}\n"
        "  - {name: failures, on: [scenario.failed, scenario.timed_out], notify: hook, group_by: [event.id]}\n" + extra
    )
    return path


def _expected(sim: Simulator) -> Counter[Key]:
    """One notification per finished job, per finished run, per failed or timed-out scenario."""
    keys: Counter[Key] = Counter()
    for plan in sim.jobs():
        view = sim.job_view(plan.job_id)
        keys[("finished", plan.name, view["state"], "")] += 1
        for outcome in view["benchmark_outcomes"] or []:
            keys[("runs", plan.name, outcome["agent_name"], "")] += 1
            for scenario in outcome["scenario_outcomes"]:
                kind = {"FAILED": "scenario.failed", "TIMEOUT": "scenario.timed_out"}.get(scenario["state"])
                if kind:
                    keys[("failures", plan.name, kind, scenario["scenario_definition_id"])] += 1
    return keys


def _keys(payload: dict[str, Any]) -> list[Key]:
    """What a notification told: one key per event it carries."""
    rule = payload["rule"]
    keys = []
    for event in payload["events"]:
        if rule == "finished":
            keys.append((rule, event["job_name"], event["state"], ""))
        elif rule == "runs":
            keys.append((rule, event["job_name"], event["agent_name"], ""))
        else:
            keys.append((rule, event["job_name"], event["kind"], event["scenario_definition_id"]))
    return keys


async def _start(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "watcher", "run", "--config", str(config), cwd=config.parent,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


async def _wait_for(condition: Any, deadline_s: float, what: str) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _stop(process: asyncio.subprocess.Process) -> str:
    process.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, err.decode()[-2000:]
    return err.decode()


class World:
    """The simulator on an accelerated clock and a webhook receiver, both on real local ports."""

    def __init__(self, sim: Simulator, receiver: WebhookReceiver, api: str, hook: str) -> None:
        self.sim, self.receiver, self.api, self.hook = sim, receiver, api, hook

    def all_finished(self) -> bool:
        return all(self.sim.job_view(plan.job_id)["state"] in ("completed", "failed") for plan in self.sim.jobs())

    def received(self) -> Counter[Key]:
        return Counter(key for delivery in _unique(self.receiver) for key in _keys(delivery.payload))


def _unique(receiver: WebhookReceiver) -> list[Any]:
    seen: set[str | None] = set()
    unique = []
    for delivery in receiver.deliveries:
        if delivery.webhook_id not in seen:
            seen.add(delivery.webhook_id)
            unique.append(delivery)
    return unique


@pytest.fixture
async def world(aiohttp_server: Any) -> World:
    sim = Simulator(seed=17, clock=ScaledClock(speed=SPEED), api_key="e2e-key")
    for spec in SPECS:
        sim.add_job(spec)
    receiver = WebhookReceiver(SECRET)
    api_server = await aiohttp_server(create_app(sim))
    hook_server = await aiohttp_server(receiver.app())
    return World(sim, receiver, str(api_server.make_url("")).rstrip("/"), str(hook_server.make_url("/hook")))


async def _until_all_told(world: World) -> Counter[Key]:
    await _wait_for(world.all_finished, 60, "the simulated jobs to finish")
    expected = _expected(world.sim)
    await _wait_for(lambda: world.received() == expected, 30, f"{sum(expected.values())} notifications")
    return expected


async def test_a_full_lifecycle_yields_the_expected_notifications(world: World, tmp_path: Path) -> None:
    process = await _start(_config(tmp_path, world.api, world.hook))
    expected = await _until_all_told(world)
    log = await _stop(process)
    assert sum(expected.values()) >= 6 and ("finished", "e2e-setup-fails", "failed", "") in expected
    assert all(delivery.verified for delivery in world.receiver.deliveries)
    assert len(world.receiver.deliveries) == len(_unique(world.receiver))  # nothing twice
    assert "stopped" in log and "e2e-key" not in log


async def test_kill_9_and_restart_lose_nothing_and_repeat_only_sends_in_flight(world: World, tmp_path: Path) -> None:
    config = _config(tmp_path, world.api, world.hook)
    first = await _start(config)
    await _wait_for(lambda: len(world.receiver.requests) >= 2, 60, "the first notifications")
    first.send_signal(signal.SIGKILL)
    await first.wait()
    second = await _start(config)
    expected = await _until_all_told(world)
    await _stop(second)
    by_id = Counter(delivery.webhook_id for delivery in world.receiver.deliveries)
    assert sum(n - 1 for n in by_id.values()) <= CONCURRENCY  # repeats: at most the sends in flight at the kill
    assert world.received() == expected  # and no fact was told twice under two ids


async def test_api_faults_change_nothing_that_arrives(world: World, tmp_path: Path) -> None:
    world.sim.set_faults(
        Faults(rate_429=0.08, rate_500=0.04, rate_503=0.04, rate_truncated=0.04, rate_malformed=0.04, retry_after_s=0.2)
    )
    process = await _start(_config(tmp_path, world.api, world.hook))
    await _until_all_told(world)
    await _stop(process)
    assert len(world.receiver.deliveries) == len(_unique(world.receiver))


async def test_the_status_endpoint_answers_while_running(world: World, tmp_path: Path) -> None:
    config = _config(tmp_path, world.api, world.hook).read_text().replace("http: {port: 0}", "http: {port: 19108}")
    (tmp_path / "benchwatch.yaml").write_text(config)
    process = await _start(tmp_path / "benchwatch.yaml")
    try:
        async with aiohttp.ClientSession() as http:
            await _wait_for(lambda: world.received().total() > 0, 60, "a notification")
            async with http.get("http://127.0.0.1:19108/readyz") as ready:
                assert ready.status == 200
            async with http.get("http://127.0.0.1:19108/metrics") as metrics:
                text = await metrics.text()
            assert "benchwatch_events_total" in text and 'benchwatch_polls_total{outcome="ok"}' in text
            async with http.get("http://127.0.0.1:19108/api/jobs") as jobs:
                assert {job["job_name"] for job in await jobs.json()} == {"e2e-complete", "e2e-setup-fails"}
    finally:
        await _stop(process)


async def _started(process: asyncio.subprocess.Process) -> None:
    """Wait until `benchwatch run` says it is watching (its store open, its first cycle scheduled)."""
    assert process.stderr is not None
    async with asyncio.timeout(30):
        while b"watching" not in await process.stderr.readline():
            pass


async def test_two_replicas_on_postgres_share_the_jobs_and_a_kill_9_loses_nothing(
    aiohttp_server: Any, tmp_path: Path, postgres_database: str
) -> None:
    sim = Simulator(seed=17, clock=ScaledClock(speed=SPEED), api_key="e2e-key")
    receiver = WebhookReceiver(SECRET)
    api = str((await aiohttp_server(create_app(sim))).make_url("")).rstrip("/")
    world = World(sim, receiver, api, str((await aiohttp_server(receiver.app())).make_url("/hook")))
    url = f"postgresql://postgres@127.0.0.1:5432/{postgres_database}"
    replicas = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        path = _config(folder, world.api, world.hook)
        path.write_text(
            path.read_text().replace("state: {path: ./state.db}", f"state: {{url: '{url}', lease_ttl: 2s}}")
        )
        replicas.append(await _start(path))
    for process in replicas:
        await _started(process)
    for spec in SPECS:  # the jobs start once both replicas run: two slow starts cannot miss their beginning
        sim.add_job(spec)
    first, second = replicas
    await _wait_for(lambda: len(receiver.requests) >= 2, 60, "the first notifications")
    first.send_signal(signal.SIGKILL)  # its jobs move to the other replica within 2 s + 1 s
    await first.wait()
    expected = await _until_all_told(world)
    log = await _stop(second)
    by_id = Counter(delivery.webhook_id for delivery in receiver.deliveries)
    assert sum(n - 1 for n in by_id.values()) <= CONCURRENCY  # repeats: at most the sends in flight at the kill
    assert world.received() == expected  # every fact told (the killed replica's jobs too), none under two ids
    assert "Traceback" not in log

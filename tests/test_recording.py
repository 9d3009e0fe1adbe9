"""Recording snapshots for `replay`: `benchwatch record` until the jobs finish or a signal, `benchwatch run --record`
for what the service polls — and what `run` logs and exports meanwhile, as a person reads it."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import FakeSleep, ServerFactory
from watcher.api.client import RequestLimits, RunloopClient
from watcher.cli.record import record_jobs
from watcher.cli.replay import read_snapshots, replay
from watcher.core.clock import ScaledClock
from watcher.pipeline.recording import SnapshotRecorder
from watcher.simulator import SimJobSpec, Simulator, create_app

BENCHWATCH = [sys.executable, "-m", "watcher"]
SECOND = 1000


def _spec(name: str, **fields: Any) -> SimJobSpec:
    base: dict[str, Any] = {"n_scenarios": 4, "concurrency": 2, "scenario_duration_s": (60, 120), "fail_rate": 0.3}
    return SimJobSpec(name=name, **(base | fields))


def _client(url: str, sleep: FakeSleep) -> RunloopClient:
    return RunloopClient(
        base_url=url, api_key="k", sleep=sleep, clock=sleep.clock, limits=RequestLimits(max_per_s=None)
    )


async def test_record_writes_replay_lines_with_real_times_until_the_jobs_finish(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep, tmp_path: Path
) -> None:
    first, second = sim.add_job(_spec("rec-a")), sim.add_job(_spec("rec-b", n_scenarios=2))
    path = tmp_path / "recording.jsonl"
    started_ms = fake_sleep.clock.now_ms()
    with path.open("w") as file:
        recorder = SnapshotRecorder(file)
        async with _client(sim_url, fake_sleep) as client:
            finished = await record_jobs(client, [first.job_id, second.job_id], recorder, 30 * SECOND,
                                         stop=asyncio.Event(), clock=fake_sleep.clock, sleep=fake_sleep)  # fmt: skip
    assert finished and recorder.written == len(path.read_text().splitlines())
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(list(line) == ["at_ms", "job", "scenario_runs"] for line in lines)
    times = [line["at_ms"] for line in lines]
    assert times == sorted(times) and times[0] == started_ms and times[-1] == fake_sleep.clock.now_ms()
    last_state = {line["job"]["name"]: line["job"]["state"] for line in lines}
    assert last_state == {"rec-a": "completed", "rec-b": "completed"}
    assert any(runs for line in lines for runs in line["scenario_runs"].values())  # scenario runs while running
    assert len(read_snapshots(path)) == len(lines)
    out = io.StringIO()
    await replay(path, out)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    kinds = {(event["job_name"], event["kind"]) for event in events}
    assert {("rec-a", "job.finished"), ("rec-b", "job.finished"), ("rec-a", "run.finished")} <= kinds
    failed = [event for event in events if event["kind"] == "scenario.failed"]
    assert failed and all(event["at_ms"] in times for event in failed)  # seen when a poll saw them, mid-run


async def test_record_stops_on_a_signal_with_what_it_has(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep, tmp_path: Path
) -> None:
    plan = sim.add_job(_spec("rec-long", scenario_duration_s=(6000, 9000)))
    stop = asyncio.Event()
    fake_sleep.on_sleep = lambda n: stop.set() if n == 3 else None
    out = io.StringIO()
    recorder = SnapshotRecorder(out)
    async with _client(sim_url, fake_sleep) as client:
        finished = await record_jobs(client, [plan.job_id], recorder, 30 * SECOND, stop=stop,
                                     clock=fake_sleep.clock, sleep=fake_sleep)  # fmt: skip
    assert not finished and 1 <= recorder.written <= 4  # only lines that changed: states, scenario runs started


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
async def test_run_records_what_it_polls_logs_what_a_person_acts_on_and_exports_no_created_series(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    sim = Simulator(seed=2, clock=ScaledClock(speed=60))
    plan = sim.add_job(_spec("e2e-rec", init_s=0, queue_s=0, scenario_duration_s=(600, 900)))
    server = await aiohttp_server(create_app(sim))
    port, folder = _free_port(), tmp_path / "recordings"
    folder.mkdir()
    config = tmp_path / "benchwatch.yaml"
    config.write_text(
        f"runloop: {{base_url: '{str(server.make_url('')).rstrip('/')}', api_key: k}}\n"
        "watch: {discover: {name: 'e2e-*'}, poll_interval: 1s}\n"
        f"state: {{path: {tmp_path / 'state.db'}}}\nhttp: {{port: {port}}}\n"
        "notifiers: {screen: {type: console}}\nrules: [{name: all, on: job.finished, notify: screen}]\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOOP_")}
    process = await asyncio.create_subprocess_exec(
        *BENCHWATCH, "run", "--config", str(config), "--log-format", "json", "--record", str(folder),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        recorded = await _first_recording(folder, deadline_s=30)
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as response:
            metrics = await response.text()
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, err.decode()[-2000:]
    assert "benchwatch_polls_total" in metrics and "_created" not in metrics
    logs = [json.loads(line) for line in err.decode().splitlines()]
    messages = [entry["message"] for entry in logs]
    assert not any("tentatively" in message or "watching 0 jobs" in message for message in messages), messages
    assert any(message.startswith("watching jobs named 'e2e-*' (found at the first poll)") for message in messages)
    discovered = [entry for entry in logs if entry.get("event_kind") == "job.discovered"]
    assert discovered and discovered[0]["job_id"] == plan.job_id and discovered[0]["level"] == "INFO"
    assert not [entry for entry in logs if entry.get("event_kind") == "job.progress"]  # DEBUG only
    assert any(entry["message"].startswith(f"recording every changed snapshot to {folder}") for entry in logs)
    snapshots = read_snapshots(recorded)
    assert snapshots[0].job.id == plan.job_id and snapshots[0].scenario_runs  # scenario runs, as polled


async def _first_recording(folder: Path, deadline_s: float) -> Path:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for path in await asyncio.to_thread(lambda: list(folder.glob("snapshots-*.jsonl"))):
            if (await asyncio.to_thread(path.read_text)).endswith("\n"):
                return path
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing recorded in {folder}")

"""From the end of a poll to the webhook receiver holding the notification (rule without group_wait).

The pipeline is the service's: the tracker commits events and notifications to a SQLite file, the delivery
worker — woken by the commit — sends through the webhook notifier to a local receiver. Baseline in the same run:
the same body POSTed straight to the same receiver on the same session (the HTTP floor).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from rules.engine import Router
from watcher.app.config import load_config
from watcher.app.delivery import build_worker
from watcher.core.clock import SystemClock
from watcher.core.models import BenchmarkJobView
from watcher.core.snapshot import Snapshot
from watcher.pipeline.tracker import JobTracker
from watcher.store.sqlite import SQLiteStore

TARGET_MS = 100.0


def _job(step: int) -> BenchmarkJobView:
    outcome = {
        "benchmark_run_id": f"bmr_{step}",
        "agent_name": f"agent-{step}",
        "n_completed": 1,
        "n_failed": 0,
        "n_timeout": 0,
        "average_score": 1.0,
        "scenario_outcomes": [],
    }
    return BenchmarkJobView.model_validate(
        {"id": "bmj_bench", "name": "latency", "state": "running", "create_time_ms": 1, "benchmark_outcomes": [outcome]}
    )


class _Receiver:
    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.arrivals[str(body["id"])] = time.perf_counter()
        self.arrived.set()
        return web.Response(status=204)


async def run(*, quick: bool = False) -> dict[str, Any]:
    """Measure; print a table; return the figures."""
    rounds = 20 if quick else 300
    receiver = _Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            latencies = await _pipeline(Path(folder), f"{site.name}/hook", receiver, rounds)
            floor = await _floor(f"{site.name}/hook", receiver, rounds)
    finally:
        await runner.cleanup()
    return _report(latencies, floor)


async def _pipeline(folder: Path, url: str, receiver: _Receiver, rounds: int) -> list[float]:
    config_path = folder / "benchwatch.yaml"
    config_path.write_text(
        f"state: {{path: ./state.db}}\nnotifiers:\n  hook: {{type: webhook, url: '{url}'}}\n"
        "rules:\n  - {name: runs, on: run.finished, notify: hook}\n"
    )
    loaded = load_config(config_path, {})
    clock = SystemClock()
    latencies = []
    async with SQLiteStore(loaded.state_path()) as store, aiohttp.ClientSession() as session:
        tracker = JobTracker(store, router=Router(loaded.config.rules))
        worker = build_worker(loaded.config, store, session, clock)
        worker_task = asyncio.create_task(worker.run())
        await tracker.observe(Snapshot(job=_job(0), at_ms=clock.now_ms()))
        for step in range(1, rounds + 1):
            receiver.arrived.clear()
            observation = await tracker.observe(Snapshot(job=_job(step), at_ms=clock.now_ms()))
            poll_done = time.perf_counter()
            worker.wake()
            (notification,) = observation.notifications
            while notification.id not in receiver.arrivals:
                await asyncio.wait_for(receiver.arrived.wait(), timeout=10)
                receiver.arrived.clear()
            latencies.append((receiver.arrivals[notification.id] - poll_done) * 1000)
        await worker.stop()
        worker_task.cancel()
    return latencies


async def _floor(url: str, receiver: _Receiver, rounds: int) -> list[float]:
    latencies = []
    async with aiohttp.ClientSession() as session:
        for step in range(rounds):
            key = f"floor-{step}"
            body = json.dumps({"id": key, "padding": "x" * 2000}).encode()
            started = time.perf_counter()
            async with session.post(url, data=body) as response:
                await response.read()
            latencies.append((receiver.arrivals[key] - started) * 1000)
    return latencies


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _report(latencies: list[float], floor: list[float]) -> dict[str, Any]:
    figures = {
        "rounds": len(latencies),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(_percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
        "floor_p50_ms": round(statistics.median(floor), 2),
        "floor_p99_ms": round(_percentile(floor, 0.99), 2),
        "target_ms": TARGET_MS,
    }
    figures["p50_ratio_to_floor"] = round(figures["p50_ms"] / max(figures["floor_p50_ms"], 1e-6), 1)
    figures["meets_target"] = figures["p99_ms"] <= TARGET_MS
    print("notify-latency: end of poll → webhook receiver holds the notification (no group_wait)")
    print(f"  {'':<22}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    print(f"  {'benchwatch pipeline':<22}{figures['p50_ms']:>10}{figures['p99_ms']:>10}{figures['max_ms']:>10}")
    print(f"  {'baseline: bare POST':<22}{figures['floor_p50_ms']:>10}{figures['floor_p99_ms']:>10}")
    verdict = "meets" if figures["meets_target"] else "MISSES"
    print(f"  ratio p50 pipeline / floor: {figures['p50_ratio_to_floor']}×; p99 {verdict} the {TARGET_MS:g} ms target")
    return figures

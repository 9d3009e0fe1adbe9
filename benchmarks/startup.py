"""Start-up: how long a command takes before it does anything, beside the interpreter's own floor.

In one run, on one machine state: the median wall time of `python -c pass` (the floor), `python -c 'import aiohttp'`
(what any HTTP command pays), `benchwatch --help`, `benchwatch wait --help`, and the time from spawning
`benchwatch wait JOB` to the simulator receiving its first request. Each figure also as a ratio to the floor.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from watcher.core.clock import ManualClock
from watcher.simulator import SimJobSpec, Simulator, create_app

API_KEY = "startup-key"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def benchwatch_command() -> list[str]:
    """The installed `benchwatch` script next to this interpreter (what a user runs), else `python -m watcher`."""
    script = Path(sys.executable).parent / "benchwatch"
    return [str(script)] if script.exists() else [sys.executable, "-m", "watcher"]


def _wall_s(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def _env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RUNLOOP_")}
    return {**env, "RUNLOOP_API_KEY": API_KEY}


class FirstRequest:
    """A middleware noting when each request arrives (perf_counter), on the simulator's app."""

    def __init__(self) -> None:
        self.arrivals_s: list[float] = []
        self.arrived = asyncio.Event()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Note the arrival, then answer as the simulator does."""
        self.arrivals_s.append(time.perf_counter())
        self.arrived.set()
        return await handler(request)


async def _serve_finished_job() -> tuple[web.AppRunner, str, str, FirstRequest]:
    """The simulator, with one job already completed, on a free port."""
    clock = ManualClock()
    sim = Simulator(seed=3, clock=clock, api_key=API_KEY)
    plan = sim.add_job(SimJobSpec(name="startup", n_scenarios=2, fail_rate=0.0, timeout_rate=0.0))
    clock.advance(24 * 3_600_000)
    probe = FirstRequest()
    app = create_app(sim)
    app.middlewares.append(probe.middleware)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}", plan.job_id, probe


async def _first_request_s(base_url: str, job_id: str, probe: FirstRequest) -> float:
    probe.arrivals_s.clear()
    probe.arrived.clear()
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *benchwatch_command(), "wait", job_id, "--base-url", base_url, "--interval", "1s",
        env=_env(), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await asyncio.wait_for(probe.arrived.wait(), timeout=30)
    finally:
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    if process.returncode != 0:
        raise RuntimeError(f"benchwatch wait exited {process.returncode}: {err.decode()[-500:]}")
    return probe.arrivals_s[0] - started


async def run(*, quick: bool) -> dict[str, Any]:
    """Median wall of each command over a few rounds (interleaved, so load drifts hit all alike)."""
    rounds = 1 if quick else 15
    base = [sys.executable]
    commands = {
        "python -c pass": [*base, "-c", "pass"],
        "python -c 'import aiohttp'": [*base, "-c", "import aiohttp"],
        "benchwatch --help": [*benchwatch_command(), "--help"],
        "benchwatch wait --help": [*benchwatch_command(), "wait", "--help"],
    }
    samples: dict[str, list[float]] = {name: [] for name in commands}
    samples["benchwatch wait: first request"] = []
    runner, base_url, job_id, probe = await _serve_finished_job()
    try:
        for _ in range(rounds):
            for name, command in commands.items():
                samples[name].append(await asyncio.to_thread(_wall_s, command))
            samples["benchwatch wait: first request"].append(await _first_request_s(base_url, job_id, probe))
    finally:
        await runner.cleanup()
    figures = _figures(samples)
    print_startup(figures)
    return figures


def _figures(samples: dict[str, list[float]]) -> dict[str, Any]:
    floor_s = statistics.median(samples["python -c pass"])
    return {
        "rounds": len(samples["python -c pass"]),
        "median_s": {name: round(statistics.median(values), 4) for name, values in samples.items()},
        "vs_python": {name: round(statistics.median(values) / floor_s, 2) for name, values in samples.items()},
        "limits_s": {"benchwatch --help": 0.3, "benchwatch wait --help": 0.3, "benchwatch wait: first request": 0.5},
    }


def print_startup(figures: dict[str, Any]) -> None:
    """The start-up table: median wall, ratio to `python -c pass`, and the limit where there is one."""
    print(f"startup: median wall of {figures['rounds']} rounds")
    for name, median_s in figures["median_s"].items():
        limit = figures["limits_s"].get(name)
        verdict = "" if limit is None else f"  (limit {limit:g} s: {'met' if median_s <= limit else 'MISSED'})"
        print(f"  {name:<34}{median_s * 1000:>9.0f} ms {figures['vs_python'][name]:>7.2f}× python{verdict}")
    print()

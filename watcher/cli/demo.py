"""`benchwatch demo`: the simulator and the real watcher service, in one process, for a minute or two.

The simulator serves four jobs — one completes, one fails in setup, one has a burst of scenario failures, one
stalls — on an accelerated clock. The service watches them with a generated config: console notifications, and a
signed webhook to a local receiver. Events and notifications print as they come; a summary ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from aiohttp import web

from notifiers.webhook import sign
from watcher.app.config import load_config
from watcher.app.service import Service
from watcher.core.clock import ScaledClock, SystemClock
from watcher.core.memory import JobMemory
from watcher.core.records import StateRow
from watcher.pipeline.catchup import WATERMARK
from watcher.simulator import Simulator, create_app, demo_specs
from watcher.store import open_store

LEGEND: Final = (
    "legend:  · event            what the watcher saw (its event log)\n"
    "         ⚠ [screen] text    a notification a rule sent to the console notifier "
    "(ℹ info, ⚠ warning, ‼ critical, ✅ resolved)\n"
)
WEBHOOK_SECRET = "whsec_ZGVtby1zZWNyZXQtZm9yLWJlbmNod2F0Y2gtZGVtbw=="
_CONFIG = """\
runloop:
  base_url: {api}
  api_key: demo-key
watch:
  discover: {{name: "demo-*"}}
  poll_interval: {interval}
  stall_after: {stall_after}
state: {{path: ./demo.db}}
http: {{enabled: false}}
notifiers:
  screen: {{type: console}}
  receiver: {{type: webhook, url: "{hook}", secret: "{secret}"}}
rules:
  - name: finished
    on: job.finished
    notify: [screen, receiver]
    severity: info
  - name: weak-run
    on: run.finished
    where: {{score: {{lt: 0.7}}}}
    notify: screen
    severity: warning
  - name: failure-burst
    on: [scenario.failed, scenario.timed_out]
    notify: [screen, receiver]
    group_wait: 5s
    severity: warning
  - name: stalled
    on: job.stalled
    notify: [screen, receiver]
    severity: critical
"""


class _Receiver:
    """The local webhook receiver: keeps what arrives — headers and the body's bytes, to check signatures with."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site.name


async def run_demo(*, seed: int, speed: float, interval_s: float, max_seconds: float) -> int:
    """Run the demo; returns the exit code."""
    _demo_logging()
    watching_since_ms = SystemClock().now_ms()  # before the jobs exist: see `_begin_watching`
    sim = Simulator(seed=seed, clock=ScaledClock(speed=speed), api_key="demo-key")
    for spec in demo_specs():
        sim.add_job(spec)
    receiver = _Receiver()
    hook_app = web.Application()
    hook_app.router.add_post("/hook", receiver.handle)
    sim_runner, api = await _serve(create_app(sim))
    hook_runner, hook = await _serve(hook_app)
    # 20 simulated minutes without change, and never fewer than three polls (a fast clock must not call a job that
    # is merely between two polls stalled)
    stall_after_s = max(3 * interval_s, 1200 / speed)
    print(f"benchwatch demo: a simulated Runloop API on {api} ({speed:g}× real time) with four jobs;")
    print(f"the watcher polls every {interval_s:g}s, prints notifications (console) and signs them to {hook}\n")
    print(LEGEND)
    try:
        with tempfile.TemporaryDirectory(prefix="benchwatch-demo-") as folder:
            config = Path(folder) / "benchwatch.yaml"
            config.write_text(
                _CONFIG.format(
                    api=api,
                    interval=f"{interval_s:g}s",
                    stall_after=f"{stall_after_s:g}s",
                    hook=f"{hook}/hook",
                    secret=WEBHOOK_SECRET,
                )
            )
            await _begin_watching(Path(folder) / "demo.db", watching_since_ms)
            service = Service(load_config(config, {}))
            started = time.monotonic()
            memories = await _run_until_settled(service, max_seconds)
            _summary(service, memories, receiver, time.monotonic() - started)
    finally:
        await hook_runner.cleanup()
        await sim_runner.cleanup()
    return 0


async def _begin_watching(state: Path, since_ms: int) -> None:
    """The demo's store began watching before its jobs were created: a job that ends before the first poll sees it
    (a slow machine, a fast clock) is told in full, `late`, as after a restart — not taken as a starting point."""
    async with open_store(state) as store:
        await store.commit(state_rows=[StateRow(*WATERMARK, str(since_ms))])


def _demo_logging() -> None:
    """Event lines on stdout, briefly; the rest of the logs stay quiet."""
    logging.getLogger().setLevel(logging.WARNING)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("  · %(message)s"))
    events = logging.getLogger("benchwatch.events")
    events.setLevel(logging.DEBUG)  # progress lines too (DEBUG in `run`): the demo is there to show motion
    events.addHandler(handler)
    events.propagate = False


async def _run_until_settled(service: Service, max_seconds: float) -> dict[str, JobMemory]:
    """Run the service until every job settled (or `max_seconds`); the jobs' memories as the service left them."""
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    deadline = time.monotonic() + max_seconds
    try:
        while time.monotonic() < deadline and not await _settled(service):
            # Look twice a second; the service ending early (an error) ends the demo too.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout=0.5)
            if task.done():
                break
        return {} if task.done() else await service.store.load_memories()
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _settled(service: Service) -> bool:
    """Every job finished or told stalled, no group window open, nothing pending in the outbox or in flight."""
    if not service.is_open:  # still opening the store
        return False
    memories = await service.store.load_memories()
    done = len(memories) == 4 and all(memory.finished or memory.stalled for memory in memories.values())
    if not done or service.tracker.next_due_ms() is not None or not service.worker.idle:
        return False
    return (await service.store.outbox_counts()).get("pending", 0) == 0


def signed_notification_lines(headers: Mapping[str, str], body: bytes) -> list[str]:
    """One notification as the receiver got it, and whether its Standard Webhooks signature checks out."""
    message_id, timestamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "0")
    signature = headers.get("webhook-signature", "")
    expected = sign(WEBHOOK_SECRET, message_id, int(timestamp) if timestamp.isdigit() else 0, body)
    verdict = "verified" if hmac.compare_digest(signature, expected) else "DOES NOT MATCH"
    payload = json.loads(body)
    shown = {key: payload[key] for key in ("id", "rule", "severity", "job_name", "title") if key in payload}
    return [
        "\none of them, as the receiver got it (POST /hook):",
        f"  webhook-id: {message_id}",
        f"  webhook-timestamp: {timestamp}",
        f"  webhook-signature: {signature}",
        f"    {verdict}: HMAC-SHA256 of id.timestamp.body with the demo's secret (Standard Webhooks)",
        f"  body: {json.dumps(shown, ensure_ascii=False)} … ({len(body)} bytes)",
    ]


def next_hint() -> str:
    """What to try next, as a command that works from here: the script as it was run, the example's env var set."""
    example = Path("examples/pagerduty-on-failure.yaml")
    docs = "docs/rules.md · docs/operations.md"
    if not example.is_file():
        return f"next: {docs}"
    return f"next: RUNLOOP_API_KEY=any {_command()} check {example}   (what a config's rules catch) · {docs}"


def _command() -> str:
    """How to run benchwatch from the current folder: `benchwatch` when that is on PATH, else its path."""
    script = Path(sys.argv[0])
    if script.name != "benchwatch":  # `python -m watcher`
        return f"{_from_here(Path(sys.executable))} -m watcher"
    found = shutil.which("benchwatch")
    if found is not None and Path(found).resolve() == script.resolve():
        return "benchwatch"
    return _from_here(script)


def _from_here(path: Path) -> str:
    """`path` relative to the current folder when inside it (`.venv/bin/benchwatch`), else absolute."""
    absolute = Path.cwd() / path  # not resolved: a venv's python is a symlink that must stay one
    with contextlib.suppress(ValueError):
        return str(absolute.relative_to(Path.cwd()))
    return str(absolute)


def _summary(service: Service, by_job: dict[str, JobMemory], receiver: _Receiver, elapsed_s: float) -> None:
    memories = sorted(by_job.values(), key=lambda memory: memory.job_name)
    sent: Counter[str] = Counter()
    for (notifier, outcome, _), count in service.worker.stats.items():
        if outcome == "sent":
            sent[notifier] += count
    print(f"\nsummary after {elapsed_s:.0f}s:")
    for memory in memories:
        counters = memory.counters
        state = "stalled" if memory.stalled and not memory.finished else memory.state
        print(
            f"  {memory.job_name:<24} {state:<10} {counters.n_done}/{counters.n_expected} done, "
            f"{counters.n_failed} failed, {counters.n_timeout} timed out"
        )
    print("  notifications sent: " + (", ".join(f"{name} ×{count}" for name, count in sorted(sent.items())) or "none"))
    print(f"  the webhook receiver holds {len(receiver.received)} signed notifications")
    if receiver.received:
        print("\n".join(signed_notification_lines(*receiver.received[-1])))
    print("\n" + next_hint())


async def demo(args: argparse.Namespace) -> int:
    """`benchwatch demo`: the simulator in-process and a watch over its demo jobs."""
    return await run_demo(seed=args.seed, speed=args.speed, interval_s=args.interval, max_seconds=args.max_seconds)

"""The real Service, in this process, against the simulator on a real port and a webhook receiver, on one movable
clock: a test moves the clock and runs a poll cycle itself (the scheduler's own cycles are an hour apart)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from tests.fakes.webhook import WebhookReceiver
from watcher.app.config import load_config
from watcher.app.service import Service
from watcher.core.clock import ManualClock
from watcher.simulator import Simulator, create_app

TOKEN = "page-test-token-0123456789abcdef"
RULES = """\
rules:
  - {name: progress, on: [job.progress, scenario.failed, scenario.timed_out, job.finished], notify: hook}
"""


@dataclass
class Running:
    """A running service and what it talks to."""

    service: Service
    sim: Simulator
    clock: ManualClock
    hook: WebhookReceiver
    url: str
    config: Path

    async def poll(self, advance_ms: int = 0) -> None:
        """Move the clock (the simulator's too), then run one poll cycle to its end."""
        self.clock.advance(advance_ms)
        await self.service.poll_once()


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def write_config(folder: Path, api: str, hook: str, *, token: str | None = TOKEN, rules: str = RULES) -> Path:
    """A config watching every simulated job, one webhook notifier, and the status server on a free port."""
    token_line = f", token: '{token}'" if token else ""
    path = folder / "benchwatch.yaml"
    path.write_text(
        f"runloop: {{base_url: '{api}', api_key: sim-key}}\n"
        "watch: {discover: {name: '*'}, poll_interval: 1h, spread: 0, jitter: 0, stall_after: 1h}\n"
        f"state: {{path: ./state.db}}\nhttp: {{port: 0{token_line}}}\n"
        f"notifiers:\n  hook: {{type: webhook, url: '{hook}'}}\n" + rules
    )
    return path


@contextlib.asynccontextmanager
async def running_service(
    folder: Path, sim: Simulator, clock: ManualClock, *, token: str | None = TOKEN, rules: str = RULES
) -> AsyncIterator[Running]:
    """Serve `sim` and a webhook receiver, run the Service until its first cycle ended, yield, then stop it."""
    hook = WebhookReceiver()
    sim_runner, sim_url = await _serve(create_app(sim))
    hook_runner, hook_url = await _serve(hook.app())
    config = write_config(folder, sim_url, hook_url, token=token, rules=rules)
    service = Service(load_config(config), clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        async with asyncio.timeout(10):
            # The Service offers no event for "first cycle done" (the scheduler's first cycle runs at start):
            # a condition polled with a deadline.
            while not (await service.readiness())[0]:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert service.status is not None
        yield Running(service, sim, clock, hook, f"http://127.0.0.1:{service.status.port}", config)
    finally:
        stop.set()
        await task
        await hook_runner.cleanup()
        await sim_runner.cleanup()

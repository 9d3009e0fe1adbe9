"""A scriptable fake HTTP server: records every request, answers from a script, then with a default.

Fakes of Slack, PagerDuty and webhook receivers build on it, and the real client libraries are pointed at them.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Reply:
    """One scripted answer: status, headers, body (dict → JSON), and a delay before answering."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class FakeServer:
    """Records requests; answers each from `script` (first in, first out), else from `answer(request)`."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: deque[Reply] = deque()
        self._arrived = asyncio.Event()
        # While set and not yet opened, every answer waits for it: a receiver as slow as a test needs, no sleep.
        self.gate: asyncio.Event | None = None

    def then(self, *replies: Reply) -> FakeServer:
        """Queue scripted replies for the next requests."""
        self.script.extend(replies)
        return self

    def answer(self, recorded: Recorded) -> Reply:
        """The default answer when the script is empty; fakes override it."""
        return Reply(200, {"ok": True})

    async def wait_for(self, count: int, timeout_s: float = 5.0) -> list[Recorded]:
        """Wait until `count` requests have arrived (a condition with a deadline, not a sleep)."""
        async with asyncio.timeout(timeout_s):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.requests

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler of every route."""
        recorded = Recorded(request.method, request.path_qs, dict(request.headers), await request.read())
        self.requests.append(recorded)
        self._arrived.set()
        reply = self.script.popleft() if self.script else self.answer(recorded)
        if self.gate is not None:
            await self.gate.wait()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        body = reply.body
        if isinstance(body, dict | list):
            return web.json_response(body, status=reply.status, headers=reply.headers)
        return web.Response(status=reply.status, text="" if body is None else str(body), headers=reply.headers)

    def app(self, *, client_max_size: int = 1024**2) -> web.Application:
        """An aiohttp application routing every path to `handle`, taking bodies up to `client_max_size` bytes."""
        application = web.Application(client_max_size=client_max_size)
        application.router.add_route("*", "/{tail:.*}", self.handle)
        return application


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

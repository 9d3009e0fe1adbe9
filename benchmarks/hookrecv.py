"""`python -m benchmarks.hookrecv --port N`: the webhook receiver, in its own process. It records when each
notification arrived (`time.monotonic()`: CLOCK_MONOTONIC, the same clock in every process of a machine) and for
which job; `GET /arrivals?after=K` lists the arrivals from the K-th on."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web


@dataclass(frozen=True)
class Arrival:
    """One notification received: when (monotonic seconds), for which job, its id."""

    at_s: float
    job_id: str | None
    notification_id: str


def create_app() -> web.Application:
    """The receiver: `POST /hook`, `GET /arrivals`, `GET /ready`."""
    arrivals: list[list[object]] = []

    async def hook(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        arrivals.append([time.monotonic(), body.get("job_id"), body.get("id")])
        return web.Response(status=204)

    async def listing(request: web.Request) -> web.Response:
        after = int(request.query.get("after", "0"))
        return web.json_response({"count": len(arrivals), "arrivals": arrivals[after:]})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=2**26)
    app.router.add_post("/hook", hook)
    app.router.add_get("/arrivals", listing)
    app.router.add_get("/ready", ready)
    return app


class ReceiverClient:
    """Reads what the receiver process holds."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url
        self.hook_url = f"{base_url}/hook"

    async def arrivals(self, after: int = 0) -> list[Arrival]:
        """Arrivals from the `after`-th on."""
        async with self.session.get(f"{self.base_url}/arrivals", params={"after": str(after)}) as response:
            body = await response.json()
        return [Arrival(float(at_s), job_id, str(nid)) for at_s, job_id, nid in body["arrivals"]]

    async def count(self) -> int:
        """How many notifications arrived so far."""
        async with self.session.get(f"{self.base_url}/arrivals", params={"after": "1000000000"}) as response:
            return int((await response.json())["count"])


def main() -> None:
    """Serve until terminated."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hookrecv", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(create_app(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()

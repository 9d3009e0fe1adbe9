"""Helper processes of the benchmarks — the simulator, the webhook receiver, the naive poller — each started on a
free port and waited for, so the benchmark process measures only the watcher."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import IO, Any

import aiohttp

API_KEY = "bench-key"
READY_DEADLINE_S = 60.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Child:
    """A helper process; `url` is where it listens (empty for one that talks over stdin/stdout)."""

    process: asyncio.subprocess.Process
    url: str
    log: IO[bytes]

    async def stop(self) -> None:
        """Terminate it and wait (kill after 10 s)."""
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout=10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.log.close()

    def stderr_tail(self) -> str:
        """The end of what it wrote to stderr, for an error message."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]


async def start_child(module_args: list[str], *, ready_path: str | None, pipes: bool = False) -> Child:
    """Run `python -m ...` with `{port}` in its arguments replaced by a free port; wait until `ready_path`
    answers 200 (or, with `pipes`, talk over stdin/stdout instead)."""
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 -- the child's stderr: open as long as the child lives
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *[arg.replace("{port}", str(port)) for arg in module_args],
        stdin=asyncio.subprocess.PIPE if pipes else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if pipes else asyncio.subprocess.DEVNULL,
        stderr=log,
        limit=2**24,
    )
    child = Child(process, f"http://127.0.0.1:{port}" if ready_path is not None else "", log)
    if ready_path is not None:
        await _wait_ready(child, child.url + ready_path)
    return child


async def _wait_ready(child: Child, url: str) -> None:
    deadline = time.monotonic() + READY_DEADLINE_S
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if child.process.returncode is not None:
                raise RuntimeError(f"{url}: the process exited ({child.process.returncode}): {child.stderr_tail()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    await child.stop()
    raise RuntimeError(f"{url} was not ready within {READY_DEADLINE_S:g}s")


async def start_simulator(seed: int) -> Child:
    """`benchwatch simulate --manual-clock` with no jobs, requiring `API_KEY`."""
    args = ["-m", "watcher", "simulate", "--manual-clock", "--no-demo-jobs", "--seed", str(seed)]
    return await start_child([*args, "--api-key", API_KEY, "--port", "{port}"], ready_path="/_sim/clock")


class SimControl:
    """The simulator's control endpoints."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def advance(self, advance_ms: int) -> int:
        """Move the clock forward; returns the new simulated time."""
        return int((await self._call("POST", "/_sim/clock", {"advance_ms": advance_ms}))["now_ms"])

    async def add_workload(self, request: dict[str, Any]) -> None:
        """Create a batch of jobs (`POST /_sim/workload`)."""
        await self._call("POST", "/_sim/workload", request)

    async def stats(self) -> dict[str, Any]:
        """Requests served so far, and their bytes."""
        return await self._call("GET", "/_sim/stats")

    async def progress(self) -> dict[str, Any]:
        """How far every job has come."""
        return await self._call("GET", "/_sim/progress")

    async def terminal_ids(self) -> set[str]:
        """The ids of the jobs terminal now (no request of the API: these are no polls in the request log)."""
        return set((await self._call("GET", "/_sim/progress?terminal_ids=true"))["terminal_ids"])

    async def job_ids(self) -> list[str]:
        """Every job's id, sorted."""
        return list((await self._call("GET", "/_sim/progress?job_ids=true"))["job_ids"])

    async def last_requests(self, count: int) -> list[str]:
        """The last `count` API requests, as "GET /path?query"."""
        if count == 0:
            return []
        return list((await self._call("GET", f"/_sim/requests?last={count}"))["requests"])

    async def requests_since(self, served: int) -> tuple[list[str], int]:
        """The API requests from the `served`-th on (as "GET /path?query"), and the count to ask from next."""
        answer = await self._call("GET", f"/_sim/requests?since={served}")
        return list(answer["requests"]), int(answer["next"])

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        async with self.session.request(method, self.base_url + path, json=body) as response:
            if response.status != 200:
                raise RuntimeError(f"{method} {path}: HTTP {response.status}: {await response.text()}")
            answer: dict[str, Any] = await response.json()
            return answer


class NaiveProcess:
    """Drives `python -m benchmarks.naive` from the benchmark process."""

    def __init__(self, child: Child) -> None:
        self.child = child

    @classmethod
    async def start(cls, base_url: str) -> NaiveProcess:
        """Start the naive poller's process against `base_url`."""
        return cls(await start_child(["-m", "benchmarks.naive", "--base-url", base_url], ready_path=None, pipes=True))

    async def poll(self) -> dict[str, Any]:
        """One poll; what it cost."""
        process = self.child.process
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(b"poll\n")
        await process.stdin.drain()
        line = await process.stdout.readline()
        if not line:
            raise RuntimeError(f"the naive poller died: {self.child.stderr_tail()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stop(self) -> None:
        """Stop the process."""
        await self.child.stop()

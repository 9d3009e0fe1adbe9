"""The real `benchwatch` process at a terminal (a pseudo-terminal) and in a pipe, as a person sees it: the live
view of `wait` with what runs now, retries as one status line, Ctrl-C and SIGTERM with the summary so far, picking a
job; `jobs` with a flaky API."""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from watcher.cli.jobs import list_jobs
from watcher.cli.main import build_parser
from watcher.cli.retry_status import configure_cli_logging
from watcher.cli.wait.junit import VERDICT_SUITE
from watcher.core.clock import ScaledClock
from watcher.simulator import SimJobSpec, Simulator, create_app

BENCHWATCH = [sys.executable, "-m", "watcher"]
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOOP_")}
    return env | {"COLUMNS": "150", "LINES": "40", "TERM": "xterm-256color", "NO_COLOR": "1"}


class Terminal:
    """A benchwatch process whose stdin, stdout and stderr are one pseudo-terminal, 150 columns wide."""

    def __init__(self, *args: str) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))
        self.process = subprocess.Popen(
            [*BENCHWATCH, *args], stdin=slave, stdout=slave, stderr=slave, env=_env(), start_new_session=True
        )
        os.close(slave)
        self.master = master
        self.raw = b""

    @property
    def screen(self) -> str:
        """Everything written so far, escape sequences and carriage returns removed."""
        return _ANSI.sub("", self.raw.decode(errors="replace"))

    async def expect(self, pattern: str, timeout_s: float = 20) -> re.Match[str]:
        """Read until `pattern` shows in the screen text."""
        deadline = time.monotonic() + timeout_s
        while (found := re.search(pattern, self.screen)) is None:
            if time.monotonic() > deadline or not await self._read():
                raise AssertionError(f"{pattern!r} not seen; the screen ends:\n{self.screen[-3000:]}")
        return found

    async def finish(self, timeout_s: float = 20) -> int:
        """Read to the end; the exit code."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and await self._read():
            pass
        code = await asyncio.to_thread(self.process.wait, max(0.1, deadline - time.monotonic()))
        os.close(self.master)
        return code

    def type(self, text: str) -> None:
        """Keys, as typed."""
        os.write(self.master, text.encode())

    async def _read(self) -> bool:
        """False at the end of output."""
        ready, _, _ = await asyncio.to_thread(select.select, [self.master], [], [], 0.1)
        if not ready:
            return self.process.poll() is None or bool(select.select([self.master], [], [], 0)[0])
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the other side is closed
            return False
        self.raw += chunk
        return bool(chunk)


@pytest.fixture
async def terminals() -> AsyncIterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        if terminal.process.poll() is None:
            terminal.process.kill()
            terminal.process.wait()


def _flaky(fail: set[int]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Answer the n-th API request (counting from 1) with a 503 when n is in `fail`; the client retries at once."""
    seen = [0]

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[..., Awaitable[web.StreamResponse]]) -> Any:
        if request.path.startswith("/v1/"):
            seen[0] += 1
            if seen[0] in fail:
                return web.Response(status=503, text="busy", headers={"retry-after-ms": "30"})
        return await handler(request)

    return middleware


async def _serve(sim: Simulator, aiohttp_server: Any, fail: set[int] = frozenset()) -> str:  # type: ignore[assignment]
    app = create_app(sim)
    app.middlewares.insert(0, _flaky(set(fail)))
    server: TestServer = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


def _spec(name: str, **fields: Any) -> SimJobSpec:
    base: dict[str, Any] = {"n_scenarios": 8, "concurrency": 3, "scenario_duration_s": (60, 3000), "init_s": 1,
                            "queue_s": 1, "fail_rate": 0.0, "timeout_rate": 0.0}  # fmt: skip
    return SimJobSpec(name=name, **(base | fields))


@pytest.mark.slow
async def test_wait_live_view_retries_in_a_status_line_and_ctrl_c_prints_the_summary(
    aiohttp_server: Any, terminals: list[Terminal]
) -> None:
    sim = Simulator(seed=3, clock=ScaledClock(speed=300))
    plan = sim.add_job(_spec("live-job"))
    url = await _serve(sim, aiohttp_server, fail={4, 5})
    terminal = Terminal("wait", plan.job_id, "--base-url", url, "--interval", "200ms")
    terminals.append(terminal)
    await terminal.expect(r"retrying: GET /v1/\S+: HTTP 503")  # under the bars, not a log line
    await terminal.expect(r"running now \(6\):\s+(\d+[hms])+\s+(claude-code|codex)\s+\S+")
    await terminal.expect(r"\d+% \(\d+/\d+\)")  # a pass rate once something is done
    terminal.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    await terminal.expect(r"exit 130: interrupted by SIGINT after \d+s; the job is still running")
    assert await terminal.finish() == 130
    screen = terminal.screen
    final = screen[screen.rindex("live-job (") :]  # the final report
    assert "pass rate" in final and "score < 1" in final and "claude-code" in final
    assert "WARNING" not in screen and "Traceback" not in screen and "still waiting" not in screen


@pytest.mark.slow
async def test_wait_without_a_job_lists_running_jobs_to_pick_from_and_sigterm_writes_junit(
    aiohttp_server: Any, terminals: list[Terminal], tmp_path: Path
) -> None:
    sim = Simulator(seed=4, clock=ScaledClock(speed=60))
    alpha = sim.add_job(_spec("alpha-run", scenario_duration_s=(600, 900)))
    sim.add_job(_spec("beta-run", scenario_duration_s=(600, 900)), create_ms=sim.clock.now_ms() + 1000)
    url = await _serve(sim, aiohttp_server)
    report = tmp_path / "junit.xml"
    terminal = Terminal("wait", "--base-url", url, "--interval", "200ms", "--junit", str(report))
    terminals.append(terminal)
    await terminal.expect(r"wait for which job\? \[1-2, Enter to cancel\]")
    listing = terminal.screen
    assert re.search(r" 1 +bmj_\w+ +running .* \d+/16 +beta-run", listing)
    assert re.search(r" 2 +bmj_\w+ +running .* \d+/16 +alpha-run", listing)
    terminal.type("2\n")
    await terminal.expect(r"alpha-run · running · waiting")
    terminal.process.send_signal(signal.SIGTERM)  # what a cancelled CI job gets
    await terminal.expect(r"exit 143: interrupted by SIGTERM")
    assert await terminal.finish() == 143
    suites = ET.parse(report).getroot()
    verdict = next(suite for suite in suites if suite.get("name") == VERDICT_SUITE).find("testcase/error")
    assert verdict is not None and verdict.get("type") == "interrupted" and alpha.job_id
    assert suites.get("name") == "alpha-run"


@pytest.mark.slow
async def test_jobs_retries_leave_one_erased_status_line_at_a_terminal(
    aiohttp_server: Any, terminals: list[Terminal]
) -> None:
    sim = Simulator(seed=5, clock=ScaledClock(speed=60))
    sim.add_job(_spec("listed-job"))
    url = await _serve(sim, aiohttp_server, fail={1, 2, 4, 5})
    terminal = Terminal("jobs", "--base-url", url)
    terminals.append(terminal)
    assert await terminal.finish() == 0
    raw = terminal.raw.decode()
    assert raw.count("retrying: GET /v1/benchmark_jobs: HTTP 503") == 2
    assert re.search(r"attempt 2/6 failed, next in 0\.0s\r\x1b\[2K\r?\n?ID ", raw)  # erased before the table
    assert "WARNING" not in raw and "INFO" not in raw and "listed-job" in terminal.screen


async def test_jobs_retries_are_silent_in_a_pipe_and_log_lines_with_v(
    aiohttp_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = Simulator(seed=5, clock=ScaledClock(speed=60))
    sim.add_job(_spec("listed-job"), create_ms=sim.clock.now_ms() - 36_000_000)  # long finished: one request a run
    url = await _serve(sim, aiohttp_server, fail={1, 3})
    args = build_parser().parse_args(["jobs", "--base-url", url])
    for verbose in (False, True):
        log = io.StringIO()  # not a terminal: no status line
        configure_cli_logging(verbose=verbose, stream=log)
        try:
            assert await list_jobs(args) == 0
        finally:
            configure_cli_logging(verbose=False)
        assert "listed-job" in capsys.readouterr().out
        lines = log.getvalue().splitlines()
        if not verbose:
            assert lines == []
        else:
            retries = [line for line in lines if " INFO benchwatch.client: " in line]
            assert len(retries) == 1 and retries[0].endswith("HTTP 503: busy; attempt 1/6 failed, next in 0.0s")

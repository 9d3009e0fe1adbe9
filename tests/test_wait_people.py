"""`benchwatch wait` as a person meets it: stalls, interrupts, pass rates and what runs now, one status line for
retries, errors said once, and picking a job. In-process on a ManualClock; see test_wait_terminal.py for the real
process in a pseudo-terminal."""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console

from tests.conftest import FakeSleep
from watcher.api.client import RequestLimits, RetryPolicy, RunloopClient
from watcher.cli.wait.command import _choose_job
from watcher.cli.wait.defaults import EXIT_INTERRUPTED, EXIT_STALLED, EXIT_TIMEOUT, EXIT_UNKNOWN
from watcher.cli.wait.junit import VERDICT_SUITE
from watcher.cli.wait.loop import run_wait
from watcher.cli.wait.model import WaitOptions, WaitResult, WaitView
from watcher.cli.wait.views import JsonView, PlainView, RichView
from watcher.core.clock import ManualClock
from watcher.simulator import SimJobSpec, Simulator

MINUTE = 60_000


def _spec(**fields: Any) -> SimJobSpec:
    base: dict[str, Any] = {"name": "ci-nightly", "n_scenarios": 6, "concurrency": 3, "scenario_duration_s": (60, 120)}
    return SimJobSpec(**(base | fields))


def _client(url: str, sleep: FakeSleep, **kwargs: Any) -> RunloopClient:
    return RunloopClient(
        base_url=url, api_key="k", sleep=sleep, clock=sleep.clock, limits=RequestLimits(max_per_s=None), **kwargs
    )


async def _wait(url: str, sleep: FakeSleep, view: WaitView, *, client: dict[str, Any] | None = None,
                interrupt: asyncio.Future[int] | None = None, **options: Any) -> WaitResult:  # fmt: skip
    options.setdefault("interval_ms", MINUTE)
    async with _client(url, sleep, **(client or {})) as api:
        return await run_wait(api, WaitOptions(**options), view, clock=sleep.clock, sleep=sleep, interrupt=interrupt)


def _verdict(report: Path) -> ET.Element:
    suite = next(s for s in ET.parse(report).getroot() if s.get("name") == VERDICT_SUITE)
    case = suite.find("testcase")
    assert case is not None and case.get("name") == "job state"
    (problem,) = list(case)
    return problem


async def test_a_stalled_job_exits_5_and_says_since_when(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep, tmp_path: Path
) -> None:
    plan = sim.add_job(_spec(n_scenarios=12, scenario_duration_s=(200, 300), stall_after_s=400))
    out, err = io.StringIO(), io.StringIO()
    report = tmp_path / "junit.xml"
    result = await _wait(sim_url, fake_sleep, PlainView(out, err), job_id=plan.job_id, stall_after_ms=10 * MINUTE,
                         junit_path=report)  # fmt: skip
    assert result.exit_code == EXIT_STALLED, result.reason
    last = out.getvalue().rstrip().splitlines()[-1]
    pattern = r"exit 5: stalled: nothing moved since (.+ UTC) \(10m ago; --stall-after 10m\), (\d+)/24 done"
    match = re.fullmatch(pattern, last)
    assert match is not None, last
    now = fake_sleep.clock.now_ms()
    assert match.group(1) == _utc(now - 10 * MINUTE) and 0 < int(match.group(2)) < 24
    assert f"ci-nightly: stalled: no change for 10m 00s ({match.group(2)}/24 done)" in out.getvalue()
    assert err.getvalue() == ""
    assert _verdict(report).get("type") == "stalled"


async def test_stall_after_0_waits_on(sim: Simulator, sim_url: str, fake_sleep: FakeSleep) -> None:
    plan = sim.add_job(_spec(n_scenarios=12, scenario_duration_s=(200, 300), stall_after_s=400))
    result = await _wait(sim_url, fake_sleep, PlainView(io.StringIO(), io.StringIO()), job_id=plan.job_id,
                         stall_after_ms=None, timeout_ms=60 * MINUTE)  # fmt: skip
    assert result.exit_code == EXIT_TIMEOUT


async def test_an_interrupt_prints_the_summary_so_far_writes_junit_and_exits_130(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep, tmp_path: Path
) -> None:
    plan = sim.add_job(_spec(scenario_duration_s=(600, 900)))
    interrupt: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    fake_sleep.on_sleep = lambda n: interrupt.set_result(signal.SIGINT) if n == 3 else None
    out, err = io.StringIO(), io.StringIO()
    report = tmp_path / "junit.xml"
    result = await _wait(sim_url, fake_sleep, JsonView(out, err), job_id=plan.job_id, junit_path=report,
                         interrupt=interrupt)  # fmt: skip
    assert result.exit_code == EXIT_INTERRUPTED
    summary = json.loads(out.getvalue().splitlines()[-1])
    assert summary["type"] == "summary" and summary["exit_code"] == 130 and summary["state"] == "running"
    assert re.fullmatch(r"interrupted by SIGINT after [34]m; the job is still running", summary["reason"])
    assert [agent["agent_name"] for agent in summary["agents"]] == ["claude-code", "codex"]
    problem = _verdict(report)
    assert (problem.tag, problem.get("type"), problem.get("message")) == ("error", "interrupted", summary["reason"])


async def test_the_table_and_junit_agree_on_what_failed_and_the_pass_rate(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep, tmp_path: Path
) -> None:
    plan = sim.add_job(_spec(n_scenarios=10, fail_rate=0.2, timeout_rate=0.1, scenario_timeout_s=110))
    out, report = io.StringIO(), tmp_path / "junit.xml"
    result = await _wait(sim_url, fake_sleep, PlainView(out, io.StringIO()), job_id=plan.job_id, junit_path=report)
    assert result.exit_code == 0
    lines = out.getvalue().splitlines()
    header = next(line for line in lines if "pass rate" in line).split()
    assert header == ["agent", "model", "score", "pass", "rate", "passed", "score", "<", "1", "failed",
                      "timed", "out", "duration"]  # fmt: skip
    suites = {suite.get("name"): suite for suite in ET.parse(report).getroot()}
    for agent in ("claude-code", "codex"):
        row = next(parts for line in lines if (parts := line.split()) and parts[0] == agent)
        rate, passed, low, failed, timed_out = row[3], *map(int, row[4:8])
        kinds = Counter(
            (child.tag, child.get("type")) if (child := next(iter(case), None)) is not None else ("pass", None)
            for case in suites[agent].iter("testcase")
        )
        assert passed == kinds["pass", None] and low == kinds["failure", "score"]
        assert timed_out == kinds["error", "timeout"]
        assert failed == sum(n for (tag, kind), n in kinds.items() if tag == "failure" and kind != "score")
        assert rate == f"{passed / (passed + low + failed + timed_out):.0%}"
    assert any(line.startswith("passed: completed with score 1.0") for line in lines)


async def test_the_live_view_shows_scenarios_running_now_and_the_pass_rate(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep
) -> None:
    plan = sim.add_job(_spec(n_scenarios=12, concurrency=3, scenario_duration_s=(300, 420), init_s=0, queue_s=0))
    console = Console(record=True, force_terminal=True, width=140)
    result = await _wait(sim_url, fake_sleep, RichView(console, io.StringIO()), job_id=plan.job_id,
                         timeout_ms=12 * MINUTE)  # fmt: skip
    assert result.exit_code == EXIT_TIMEOUT
    text = console.export_text()
    assert "pass rate" in text and "running now (6):" in text  # 3 at a time for each of 2 agents
    running = [line.split() for line in text.splitlines() if re.match(r"\s+\d+m( \d+s)?\s+(claude-code|codex)\s", line)]
    assert running and all(parts[-1] in {s.name for run in plan.runs for s in run.scenarios} for parts in running)
    assert re.search(r"\d+% \(\d+/\d+\)", text)  # the live pass rate: passed/done


async def test_an_unreachable_api_is_said_once(fake_sleep: FakeSleep, tmp_path: Path) -> None:
    # stdout and stderr into one log (`2>&1`): the verdict line says it; no outage event line, no error line
    log = tmp_path / "wait.log"
    with log.open("a") as out, log.open("a") as err:
        result = await _wait("http://127.0.0.1:9", fake_sleep, PlainView(out, err), job_id="bmj_1",
                             give_up_after_ms=MINUTE, client={"retry": RetryPolicy(max_attempts=1)})  # fmt: skip
    assert result.exit_code == EXIT_UNKNOWN
    text = log.read_text()
    assert text.count("; still waiting") == 2  # each failed poll, as a warning on stderr
    assert text.count("unreachable") == 1 and "exit 4: API unreachable: every poll failed for 1m (2 polls)" in text
    assert "benchwatch: error:" not in text


async def test_latest_picks_the_newest_running_job(sim: Simulator, sim_url: str, clock: ManualClock,
                                                   fake_sleep: FakeSleep) -> None:  # fmt: skip
    older = sim.add_job(_spec(name="older", scenario_duration_s=(600, 900)))
    clock.advance(MINUTE)
    newer = sim.add_job(_spec(name="newer", scenario_duration_s=(600, 900)))
    clock.advance(MINUTE)
    sim.add_job(_spec(name="queued-still", init_s=3600))
    async with _client(sim_url, fake_sleep) as client:
        assert await _choose_job(client, latest=True) == newer.job_id
    assert older.job_id != newer.job_id


def _utc(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))

"""`benchwatch jobs` and `benchwatch job` as a person reads them: a header, progress that agrees with `wait`,
filters, and JSON lines; `job` prints one line `replay` reads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import FakeSleep
from watcher.api.client import RequestLimits, RunloopClient
from watcher.cli.errors import UsageError
from watcher.cli.jobs import HEADER, list_jobs, show_job
from watcher.cli.main import build_parser
from watcher.cli.wait.loop import run_wait
from watcher.cli.wait.model import WaitOptions, WaitProgress, WaitResult
from watcher.core.clock import ManualClock
from watcher.simulator import SimJobSpec, Simulator

MINUTE_MS = 60_000


class _Progress:
    """A wait view that keeps the last progress: what the live view's bars would show."""

    def __init__(self) -> None:
        self.last: WaitProgress | None = None

    def events(self, events: Any) -> None: ...
    def warning(self, message: str) -> None: ...
    def finished(self, result: WaitResult) -> None: ...
    def close(self) -> None: ...

    def progress(self, progress: WaitProgress) -> None:
        self.last = progress


def _spec(name: str, **fields: Any) -> SimJobSpec:
    base: dict[str, Any] = {"n_scenarios": 12, "concurrency": 3, "scenario_duration_s": (60.0, 120.0)}
    return SimJobSpec(name=name, **(base | fields))


async def _jobs(url: str, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    args = build_parser().parse_args(["jobs", "--base-url", url, *argv])
    assert await list_jobs(args) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


@pytest.fixture
def world(sim: Simulator, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("RUNLOOP_API_KEY", "k")
    done = sim.add_job(_spec("nightly-done"))
    clock.advance(MINUTE_MS)
    failed = sim.add_job(_spec("setup-broken", outcome="failed", end_after_s=30))
    clock.advance(60 * MINUTE_MS)
    running = sim.add_job(_spec("nightly-running", scenario_duration_s=(300.0, 400.0)))
    clock.advance(12 * MINUTE_MS)  # the newest job is half-way: its runs have no outcomes yet
    return {"done": done.job_id, "failed": failed.job_id, "running": running.job_id}


async def test_jobs_has_a_header_and_counts_running_jobs_as_wait_does(
    sim_url: str, world: dict[str, str], capsys: pytest.CaptureFixture[str], fake_sleep: FakeSleep
) -> None:
    out, err = await _jobs(sim_url, capsys)
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == HEADER and lines[0].split() == ["ID", "STATE", "CREATED", "(UTC)", "DONE", "NAME"]
    assert [line.split()[0] for line in lines[1:]] == [world["running"], world["failed"], world["done"]]
    running = lines[1].split()
    view = _Progress()
    client = RunloopClient(base_url=sim_url, api_key="k", clock=fake_sleep.clock, limits=RequestLimits(max_per_s=None))
    async with client:
        options = WaitOptions(job_id=world["running"], timeout_ms=1)
        await run_wait(client, options, view, clock=fake_sleep.clock, sleep=fake_sleep)
    assert view.last is not None
    wait_done = sum(agent.done for agent in view.last.agents)
    assert 0 < wait_done < 24
    assert running[1] == "running" and running[4] == f"{wait_done}/24" and running[5] == "nightly-running"
    assert lines[3].split()[4] == "24/24" and lines[2].split()[1] == "failed"


async def test_jobs_filters_by_state_and_name_glob(
    sim_url: str, world: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = await _jobs(sim_url, capsys, "--state", "running,failed")
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["running", "failed"]
    out, _ = await _jobs(sim_url, capsys, "--name", "nightly-*")
    assert [line.split()[-1] for line in out.splitlines()[1:]] == ["nightly-running", "nightly-done"]
    out, _ = await _jobs(sim_url, capsys, "--name", "nightly-done")  # exact: the API's own filter
    assert [line.split()[-1] for line in out.splitlines()[1:]] == ["nightly-done"]
    out, err = await _jobs(sim_url, capsys, "--name", "nightly-*", "--state", "cancelled")
    assert (out, err) == ("", "no jobs match\n")


async def test_jobs_json_is_one_object_per_job_per_line(
    sim_url: str, world: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, err = await _jobs(sim_url, capsys, "--json", "--limit", "2")
    rows = [json.loads(line) for line in out.splitlines()]
    assert err == "" and [row["id"] for row in rows] == [world["running"], world["failed"]]
    assert {"id", "name", "state", "n_done", "n_expected"} <= set(rows[0])
    assert rows[0]["state"] == "running" and 0 < rows[0]["n_done"] < rows[0]["n_expected"] == 24
    assert rows[1] | {"create_time_ms": 0, "failure_reason": None} == {
        "id": world["failed"], "name": "setup-broken", "state": "failed", "n_done": 0, "n_expected": 24,
        "create_time_ms": 0, "failure_reason": None, "scores": {},
    }  # fmt: skip


async def test_job_prints_one_compact_line(
    sim_url: str, world: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(["job", world["done"], "--base-url", sim_url])
    assert await show_job(args) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and json.loads(out)["id"] == world["done"]
    args = build_parser().parse_args(["job", world["done"], "--base-url", sim_url, "--pretty"])
    assert await show_job(args) == 0
    assert capsys.readouterr().out.startswith('{\n  "id": ')


async def test_an_unknown_state_is_refused_with_the_known_ones(
    sim: Simulator, sim_url: str, world: dict[str, str]
) -> None:
    asked = len(sim.request_log)
    args = build_parser().parse_args(["jobs", "--base-url", sim_url, "--state", "running,Runing", "--state", "done"])
    with pytest.raises(UsageError) as refused:  # main() prints it as `benchwatch: error: …` and exits 2
        await list_jobs(args)
    assert str(refused.value) == (
        "--state: no such job state 'done', 'runing'; the states are initializing, queued, running, completed, "
        "failed, cancelled, timeout"
    )
    assert len(sim.request_log) == asked  # refused before asking the API

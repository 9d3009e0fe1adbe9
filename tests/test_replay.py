"""`benchwatch replay`: the same file gives byte-identical events; bad lines are named; state can persist."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.recording import record, write_lines
from watcher.app.config import load_config
from watcher.cli.main import main
from watcher.cli.replay import ReplayInputError, read_snapshots, replay
from watcher.core.clock import ManualClock
from watcher.simulator import SimJobSpec, Simulator, demo_specs

BENCHWATCH = [sys.executable, "-m", "watcher"]


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    clock = ManualClock()
    sim = Simulator(seed=4, clock=clock)
    plans = [sim.add_job(spec) for spec in demo_specs()]  # four jobs, interleaved line by line
    return write_lines(tmp_path / "recording.jsonl", record(sim, clock, plans, steps=70, step_ms=30_000))


async def _replay(path: Path, state: Path | None = None) -> str:
    out = io.StringIO()
    await replay(path, out, state=state)
    return out.getvalue()


@pytest.mark.slow
def test_the_same_file_gives_byte_identical_output(recording: Path) -> None:
    first = subprocess.run([*BENCHWATCH, "replay", str(recording)], capture_output=True, check=True)
    second = subprocess.run([*BENCHWATCH, "replay", str(recording)], capture_output=True, check=True)
    assert first.stdout == second.stdout and first.stderr == second.stderr == b""
    events = [json.loads(line) for line in first.stdout.splitlines()]
    assert {event["job_name"] for event in events} == {spec.name for spec in demo_specs()}
    assert {"job.discovered", "run.started", "scenario.failed", "run.finished", "job.finished"} <= {
        e["kind"] for e in events
    }


@pytest.mark.slow
async def test_state_carries_over_between_runs(recording: Path, tmp_path: Path) -> None:
    lines = recording.read_text().splitlines(keepends=True)  # noqa: ASYNC240  # a test's small file
    head, tail = tmp_path / "head.jsonl", tmp_path / "tail.jsonl"
    head.write_text("".join(lines[:100]))
    tail.write_text("".join(lines[100:]))
    state = tmp_path / "state.db"
    assert await _replay(head, state) + await _replay(tail, state) == await _replay(recording)


async def test_bare_job_views_take_the_latest_time_they_mention(tmp_path: Path) -> None:
    # what `benchwatch job` prints (one compact line) and `job --pretty` (indented): replay reads both
    running = json.dumps(json.loads((FIXTURES / "job-running.json").read_text()))
    completed = (FIXTURES / "job-completed.json").read_text()
    path = tmp_path / "bare.jsonl"
    path.write_text(f"{running}\n\n{completed}\n")
    events = [json.loads(line) for line in (await _replay(path)).splitlines()]
    run_end_ms = 1788228052000 + 1912000  # the running view's run: start_time_ms + duration_ms
    assert (events[0]["kind"], events[0]["at_ms"]) == ("job.discovered", run_end_ms)
    # the completed view mentions no later time (its runs left in_progress_runs): never before the view before it
    assert events[-1]["kind"] == "job.finished" and events[-1]["at_ms"] == run_end_ms


def test_an_indented_object_that_breaks_is_named_by_its_line(tmp_path: Path) -> None:
    path = tmp_path / "pretty.json"
    path.write_text((FIXTURES / "job-running.json").read_text() + '\n{\n  "id": "bmj_2",\n  oops\n}\n')
    with pytest.raises(ReplayInputError, match=r"pretty.json:\d+: not valid JSON: Expecting property name"):
        read_snapshots(path)
    first_lines = (FIXTURES / "job-running.json").read_text().count("\n")
    with pytest.raises(ReplayInputError, match=f"pretty.json:{first_lines + 4}: "):
        read_snapshots(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"id": "bmj_1", "name": "x", "state": "running"}', "create_time_ms: Field required"),
        ('{"at_ms": "soon", "job": {"id": "b", "name": "x", "state": "s", "create_time_ms": 1}}', "at_ms:"),
        ('{"job": {"id": "b", "name": "x", "state": "s", "create_time_ms": 1}, "extra": 1}', "extra: Extra inputs"),
    ],
)
@pytest.mark.slow
def test_a_malformed_line_is_named_and_exits_2(
    tmp_path: Path, recording: Path, line: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = recording.read_text().splitlines()
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join([*lines[:2], line, *lines[2:5]]) + "\n")
    code = main(["replay", str(path)])  # in process: the missing file below is the one run as a process
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith(f"benchwatch: error: {path}:3: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    with pytest.raises(ReplayInputError, match=":3: "):
        read_snapshots(path)


@pytest.mark.slow
def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [*BENCHWATCH, "replay", str(tmp_path / "nope.jsonl")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2 and "nope.jsonl: No such file or directory" in result.stderr
    assert result.stderr.count("\n") == 1


async def test_windows_close_at_their_own_time_between_snapshots(tmp_path: Path) -> None:
    # As a running watcher's timer closes them: a failure seen after a window's end opens a new window; it never
    # joins the one that should have left already (snapshots here are a minute apart, windows 90 s long).
    clock = ManualClock()
    sim = Simulator(seed=4, clock=clock)
    plan = sim.add_job(SimJobSpec(name="j", n_scenarios=30, fail_rate=0.5, concurrency=10))
    recording = write_lines(tmp_path / "recording.jsonl", record(sim, clock, [plan], steps=60, step_ms=60_000))
    config = tmp_path / "benchwatch.yaml"
    config.write_text(
        "notifiers: {out: {type: console}}\n"
        "rules:\n  - {name: burst, on: [scenario.failed, scenario.timed_out], notify: out, group_wait: 90s}\n"
    )
    out = io.StringIO()
    await replay(recording, out, config=load_config(config, {}))
    sent = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(sent) > 3
    for notification in sent:
        first_ms = notification["events"][0]["at_ms"]
        assert notification["created_ms"] == first_ms + 90_000
        assert all(event["at_ms"] <= notification["created_ms"] for event in notification["events"])

"""Scenario runs as the diff reads them: decoding, latest attempts, counts, and what changed since the last poll —
and, over whole simulated lives, that diffing only what changed tells exactly what diffing everything tells."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from tests.recording import record, to_snapshot
from watcher.api.decode import decode_page
from watcher.api.errors import MalformedResponseError, SchemaError
from watcher.core.clock import ManualClock
from watcher.core.events import Event
from watcher.core.scenario_runs import RunScenarios, ScenarioRunStatus
from watcher.core.snapshot import Snapshot
from watcher.pipeline.tracker import JobTracker
from watcher.simulator import SimAgent, SimJobSpec, Simulator
from watcher.store.sqlite import SQLiteStore

PATH = "/v1/benchmark_runs/bmr_1/scenario_runs"


def _run(id_: str, scenario: str, state: str, *, start: int = 0, duration: int = 0, score: float | None = None) -> Any:
    result = None if score is None else {"score": score, "scoring_function_results": [{"output": "x" * 40}]}
    return {
        "id": id_,
        "scenario_id": scenario,
        "state": state,
        "name": f"name of {scenario}",
        "start_time_ms": start,
        "duration_ms": duration,
        "scoring_contract_result": result,
        "devbox_id": "dbx_1",
        "metadata": {"k": "v"},
        "a_field_added_later": [1, 2, 3],
    }


def _statuses(*runs: Any) -> tuple[ScenarioRunStatus, ...]:
    return decode_page(PATH, json.dumps({"runs": list(runs), "has_more": False}).encode()).runs


def test_a_page_decodes_to_the_fields_the_diff_reads_and_skips_the_rest() -> None:
    page = decode_page(PATH, json.dumps({"runs": [_run("scr_1", "scn_a", "scored", score=0.5)], "x": 1}).encode())
    (status,) = page.runs
    assert (status.id, status.scenario_id, status.state, status.name, status.score) == (
        "scr_1",
        "scn_a",
        "scored",
        "name of scn_a",
        0.5,
    )
    assert status.outcome_state == "COMPLETED" and not page.has_more


def test_a_page_of_the_wrong_shape_is_a_schema_error_naming_the_request_and_the_place() -> None:
    body = json.dumps({"runs": [{"id": 7, "scenario_id": "scn_a", "state": "running"}]}).encode()
    with pytest.raises(SchemaError, match=r"GET /v1/benchmark_runs/bmr_1/scenario_runs: .*\$\.runs\[0\]\.id"):
        decode_page(PATH, body)
    with pytest.raises(SchemaError, match="scenario_id"):
        decode_page(PATH, b'{"runs": [{"id": "scr_1", "state": "running"}]}')


def test_a_body_that_is_not_json_is_a_malformed_response() -> None:
    with pytest.raises(MalformedResponseError, match="not valid JSON"):
        decode_page(PATH, b'{"runs": [{"id": "scr_1", "sce')


def test_a_non_finite_number_on_a_page_is_unknown_not_a_failed_page() -> None:
    """msgspec refuses `1e400` ("number out of range") and `NaN`: the page was refused whole, every poll."""
    for number in (b"1e400", b"-1e400", b"NaN", b"Infinity"):
        body = b'{"runs": [{"id": "scr_1", "scenario_id": "scn_a", "state": "scored", "duration_ms": %s,' % number
        page = decode_page(PATH, body + b' "scoring_contract_result": {"score": %s}}]}' % number)
        assert page.runs[0].score is None and page.runs[0].duration_ms is None


@pytest.mark.parametrize(
    "value",
    [b'"caf\xe9"', b'"\\ud83d"', b"[" * 1000 + b"]" * 1000],
    ids=["invalid UTF-8", "a lone surrogate", "nested 1,000 deep"],
)
def test_unreadable_bytes_on_a_page_are_a_schema_error_not_a_retry_or_a_traceback(value: bytes) -> None:
    body = b'{"runs": [{"id": "scr_1", "scenario_id": "scn_a", "state": "running", "name": %s}]}' % value
    # nested 1,000 deep: "nested too deep", or — where the stack allows the lenient reader that far — a name that
    # is no string; either way that run's SchemaError, never a retried MalformedResponseError or a RecursionError
    with pytest.raises(SchemaError, match="GET /v1/benchmark_runs/bmr_1/scenario_runs: "):
        decode_page(PATH, body)


def test_the_latest_attempt_of_each_scenario_counts_by_start_time_then_id() -> None:
    runs = RunScenarios.build(
        _statuses(
            _run("scr_2", "scn_a", "failed", start=100),
            _run("scr_1", "scn_a", "running", start=200),  # the retry: started later
            _run("scr_3", "scn_b", "timeout", start=50),
            _run("scr_5", "scn_c", "scored", start=10, score=1.0),
            _run("scr_4", "scn_c", "failed", start=10),  # same start: the larger id is the later attempt
            _run("scr_6", "scn_d", "canceled"),
        )
    )
    assert sorted(status.id for status in runs.latest) == ["scr_1", "scr_3", "scr_5", "scr_6"]
    assert runs.counts == (1, 0, 1, 1)  # scr_1 is still running: not counted
    assert sorted(status.id for status in runs.changed) == ["scr_3", "scr_5", "scr_6"]  # final ones only
    assert len(runs.listed) == 6


def test_only_final_attempts_that_differ_from_the_previous_poll_are_changed() -> None:
    before = RunScenarios.build(
        _statuses(_run("scr_1", "scn_a", "running", duration=10), _run("scr_2", "scn_b", "failed", duration=5))
    )
    again = RunScenarios.build(
        _statuses(_run("scr_2", "scn_b", "failed", duration=5), _run("scr_1", "scn_a", "running", duration=99)),
        before.seen,
    )
    assert again.changed == ()  # a running attempt's duration moves on every poll: that is no change
    assert again.seen == before.seen
    finished = RunScenarios.build(
        _statuses(_run("scr_1", "scn_a", "scored", duration=120, score=0.9), _run("scr_2", "scn_b", "failed")),
        again.seen,
    )
    assert [status.id for status in finished.changed] == ["scr_1", "scr_2"]  # scr_2's duration differs too
    rescored = RunScenarios.build(
        _statuses(_run("scr_1", "scn_a", "scored", duration=120, score=0.8), _run("scr_2", "scn_b", "failed")),
        finished.seen,
    )
    assert [status.id for status in rescored.changed] == ["scr_1"]


SPECS = [
    SimJobSpec(name="retries", n_scenarios=40, n_attempts=2, fail_rate=0.3, timeout_rate=0.1, concurrency=6),
    SimJobSpec(name="cancelled", outcome="cancelled", end_after_s=900, n_scenarios=30, fail_rate=0.2),
    SimJobSpec(name="plain", n_scenarios=25, agents=[SimAgent(name="a"), SimAgent(name="b"), SimAgent(name="c")]),
]


def _life(step_ms: int) -> list[Snapshot]:
    clock = ManualClock()
    sim = Simulator(seed=11, clock=clock)
    plans = [sim.add_job(spec) for spec in SPECS]
    lines = record(sim, clock, plans, steps=3 * 3600 * 1000 // step_ms, step_ms=step_ms)
    return [to_snapshot(line) for line in lines]


def _as_polled(snapshot: Snapshot, tracker: JobTracker) -> Snapshot:
    """The snapshot as the poll cycle builds it: each run compared with what the tracker last diffed."""
    previous = tracker.seen_scenarios(snapshot.job.id)
    runs = {run_id: RunScenarios.build(r.listed, previous.get(run_id)) for run_id, r in snapshot.scenario_runs.items()}
    return dataclasses.replace(snapshot, scenario_runs=runs)


async def _observe_all(path: Path, snapshots: list[Snapshot], *, incremental: bool) -> tuple[list[Event], Any]:
    events: list[Event] = []
    async with SQLiteStore(path) as store:
        tracker = JobTracker(store)
        for snapshot in snapshots:
            events.extend((await tracker.observe(_as_polled(snapshot, tracker) if incremental else snapshot)).events)
        return events, {job_id: memory.model_dump() for job_id, memory in (await store.load_memories()).items()}


@pytest.mark.parametrize(("step_ms", "kinds"), [(40_000, 4), (180_000, 3)])
@pytest.mark.slow
async def test_diffing_only_what_changed_tells_what_diffing_everything_tells(
    tmp_path: Path, step_ms: int, kinds: int
) -> None:
    snapshots = _life(step_ms)
    full = await _observe_all(tmp_path / "full.db", snapshots, incremental=False)
    incremental = await _observe_all(tmp_path / "incremental.db", snapshots, incremental=True)
    assert incremental == full
    # a life with failures, time-outs, cancellations and (polled often enough to see them) recoveries
    assert len({event.kind for event in full[0] if event.kind.startswith("scenario.")}) == kinds


@pytest.mark.slow
async def test_most_polls_of_a_known_job_hand_the_diff_few_scenarios(tmp_path: Path) -> None:
    snapshots = _life(60_000)
    async with SQLiteStore(tmp_path / "state.db") as store:
        tracker = JobTracker(store)
        latest = changed = 0
        for snapshot in snapshots:
            polled = _as_polled(snapshot, tracker)
            if tracker.knows(snapshot.job.id):
                latest += sum(len(runs.latest) for runs in polled.scenario_runs.values())
                changed += sum(len(runs.changed) for runs in polled.scenario_runs.values())
            await tracker.observe(polled)
    assert latest > 5000 and changed < latest / 10


class Interrupted(Exception):
    pass


@pytest.mark.slow
async def test_a_poll_whose_commit_failed_is_compared_with_the_last_committed_one(tmp_path: Path) -> None:
    snapshots = _life(180_000)
    failing = {"armed": False}

    def hook(step: str) -> None:
        if failing["armed"] and step == "before_commit":
            failing["armed"] = False
            raise Interrupted(step)

    expected, _ = await _observe_all(tmp_path / "plain.db", snapshots, incremental=True)
    events: list[Event] = []
    async with SQLiteStore(tmp_path / "state.db", step_hook=hook) as store:
        tracker = JobTracker(store)
        for index, snapshot in enumerate(snapshots):
            polled = _as_polled(snapshot, tracker)
            failing["armed"] = index % 7 == 3 and any(runs.changed for runs in polled.scenario_runs.values())
            try:
                events.extend((await tracker.observe(polled)).events)
            except Interrupted:
                events.extend((await tracker.observe(_as_polled(snapshot, tracker))).events)  # the next poll
    assert [event.id for event in events] == [event.id for event in expected]

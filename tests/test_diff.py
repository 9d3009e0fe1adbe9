"""The diff, rule by rule: each rule of the events issue has its own test here."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest

from watcher.core.events import EVENT_ADAPTER, Event, JobFinished, ScenarioRecovered
from watcher.core.memory import JobMemory
from watcher.core.models import BenchmarkJobView, ScenarioRunView
from watcher.core.scenario_runs import from_views
from watcher.core.snapshot import Snapshot
from watcher.diff.jobs import diff

JOB_ID = "bmj_1"
T0 = 1_788_228_000_000


def outcome(run_id: str, agent: str, scenarios: list[dict[str, Any]], score: float | None = 0.5) -> dict[str, Any]:
    states = [s["state"] for s in scenarios]
    return {
        "benchmark_run_id": run_id,
        "agent_name": agent,
        "model_name": f"{agent}-model",
        "n_completed": states.count("COMPLETED"),
        "n_failed": states.count("FAILED"),
        "n_timeout": states.count("TIMEOUT"),
        "average_score": score,
        "duration_ms": 1000,
        "scenario_outcomes": scenarios,
    }


def scenario(definition_id: str, state: str, score: float | None = None, reason: str | None = None) -> dict[str, Any]:
    failure = {"exception_type": reason, "exception_message": f"{reason} happened"} if reason else None
    return {
        "scenario_definition_id": definition_id,
        "scenario_name": f"name-{definition_id}",
        "scenario_run_id": f"scr_{definition_id}",
        "state": state,
        "score": score,
        "duration_ms": 10,
        "failure_reason": failure,
    }


def in_progress(run_id: str, agent: str, state: str = "running") -> dict[str, Any]:
    return {
        "benchmark_run_id": run_id,
        "state": state,
        "start_time_ms": T0,
        "agent_config": {"type": "job_agent", "name": agent, "model_name": f"{agent}-model"},
    }


def job(state: str = "running", outcomes: list[Any] | None = None, runs: list[Any] | None = None, **extra: Any) -> dict:
    return {
        "id": JOB_ID,
        "name": "nightly",
        "state": state,
        "create_time_ms": T0,
        "job_spec": {"scenario_ids": ["s1", "s2", "s3"], "agent_configs": [{"name": "a"}, {"name": "b"}]},
        "benchmark_outcomes": outcomes,
        "in_progress_runs": runs,
        **extra,
    }


def scenario_run(run_id: str, definition_id: str, state: str, *, start: int = 0, score: float | None = None) -> dict:
    return {
        "id": f"scr_{definition_id}_{start}",
        "scenario_id": definition_id,
        "name": f"name-{definition_id}",
        "state": state,
        "benchmark_run_id": run_id,
        "start_time_ms": T0 + start,
        "duration_ms": 5,
        "scoring_contract_result": {"score": score, "scoring_function_results": []} if score is not None else None,
    }


def snap(view: dict[str, Any], at: int, scenario_runs: dict[str, list[dict]] | None = None) -> Snapshot:
    runs = {k: tuple(ScenarioRunView.model_validate(v) for v in vs) for k, vs in (scenario_runs or {}).items()}
    return Snapshot(job=BenchmarkJobView.model_validate(view), at_ms=T0 + at, scenario_runs=from_views(runs))


def play(*snapshots: Snapshot) -> tuple[list[list[Event]], JobMemory]:
    """Diff each snapshot in turn; the events of each step, and the final memory."""
    memory: JobMemory | None = None
    steps = []
    for snapshot in snapshots:
        result = diff(memory, snapshot)
        steps.append(list(result.events))
        memory = result.memory
    assert memory is not None
    return steps, memory


def kinds(events: list[Event]) -> list[str]:
    return [event.kind for event in events]


def test_first_snapshot_yields_only_discovered_even_when_terminal_with_failures() -> None:
    view = job(
        "completed",
        outcomes=[outcome("r1", "a", [scenario("s1", "FAILED", reason="E"), scenario("s2", "COMPLETED", 1.0)])],
    )
    (first,), memory = play(snap(view, 0))
    assert kinds(first) == ["job.discovered"]
    discovered = first[0]
    assert discovered.model_dump(include={"state", "n_completed", "n_failed", "n_done", "n_expected"}) == {
        "state": "completed", "n_completed": 1, "n_failed": 1, "n_done": 2, "n_expected": 6,
    }  # fmt: skip
    assert memory.finished and memory.unresolved == {"r1": {"s1": "FAILED"}}
    steps, _ = play(snap(view, 0), snap(view, 1000))
    assert steps[1] == []  # nothing in it is news later either


def test_identical_reordered_and_null_versus_empty_snapshots_yield_nothing() -> None:
    runs = [in_progress("r2", "b"), in_progress("r3", "c")]
    base = job(
        outcomes=[outcome("r1", "a", [scenario("s1", "COMPLETED", 1.0), scenario("s2", "FAILED", reason="E")])],
        runs=runs,
    )
    reordered = copy.deepcopy(base)
    reordered["in_progress_runs"].reverse()
    reordered["benchmark_outcomes"][0]["scenario_outcomes"].reverse()
    steps, _ = play(snap(base, 0), snap(base, 1), snap(reordered, 2))
    assert steps[1:] == [[], []]
    empty, null = job(outcomes=[], runs=[]), job(outcomes=None, runs=None)
    steps, _ = play(snap(empty, 0), snap(null, 1), snap(empty, 2))
    assert steps[1:] == [[], []]


def test_scenario_runs_in_any_order_yield_nothing_new() -> None:
    runs = [scenario_run("r1", "s1", "failed"), scenario_run("r1", "s2", "running")]
    view = job(runs=[in_progress("r1", "a")])
    steps, _ = play(snap(view, 0, {"r1": runs}), snap(view, 1, {"r1": list(reversed(runs))}))
    assert steps[1] == []


def test_unknown_fields_ignored_and_unknown_state_passes_through() -> None:
    steps, _ = play(snap(job("running"), 0), snap(job("paused", shiny_new_field={"x": 1}), 1))
    (event,) = steps[1]
    assert event.kind == "job.state_changed"
    assert (event.from_state, event.to_state) == ("running", "paused")  # type: ignore[union-attr]


def test_terminal_is_final_and_a_job_finishes_once(caplog: pytest.LogCaptureFixture) -> None:
    steps, memory = play(snap(job("running"), 0), snap(job("failed", failure_reason="boom"), 1))
    (finished,) = steps[1]
    assert isinstance(finished, JobFinished) and finished.failure_reason == "boom" and finished.from_state == "running"
    result = diff(memory, snap(job("running"), 2))
    assert result.events == () and result.memory.state == "failed"
    assert result.warnings and "after finishing" in result.warnings[0]
    again = diff(result.memory, snap(job("completed"), 3))
    assert again.events == ()


def test_a_scenario_seen_in_scenario_runs_then_in_outcomes_is_one_event() -> None:
    during = job(runs=[in_progress("r1", "a")])
    after = job(
        outcomes=[outcome("r1", "a", [scenario("s1", "FAILED", reason="AgentError")])],
        runs=[in_progress("r1", "a", "completed")],
    )
    steps, _ = play(
        snap(during, 0, {"r1": []}),
        snap(during, 1, {"r1": [scenario_run("r1", "s1", "failed")]}),
        snap(after, 2, {"r1": [scenario_run("r1", "s1", "failed")]}),
    )
    assert kinds(steps[1]) == ["scenario.failed", "job.progress"]
    assert steps[1][0].failure_reason is None  # type: ignore[union-attr]  # scenario runs carry no reason
    assert "scenario.failed" not in kinds(steps[2]) and "run.finished" in kinds(steps[2])


def test_a_run_in_both_lists_is_one_run() -> None:
    both = job(
        outcomes=[outcome("r1", "a", [scenario("s1", "COMPLETED", 1.0)])], runs=[in_progress("r1", "a", "completed")]
    )
    steps, _ = play(snap(job(state="queued"), 0), snap(both, 1), snap(job(outcomes=both["benchmark_outcomes"]), 2))
    assert kinds(steps[1]).count("run.started") == 1 and kinds(steps[1]).count("run.finished") == 1
    assert steps[1][-2].n_completed == 1  # type: ignore[union-attr]  # progress counted once
    assert steps[2] == []


def test_events_come_in_the_fixed_order() -> None:
    before = job(outcomes=[outcome("r0", "z", [scenario("s1", "COMPLETED", 0.5)], score=0.5)])
    after = job(
        "completed",
        outcomes=[
            outcome("r0", "z", [scenario("s1", "COMPLETED", 0.75)], score=0.75),
            outcome("r1", "a", [scenario("s1", "FAILED", reason="E"), scenario("s2", "TIMEOUT", reason="T")]),
        ],
    )
    steps, _ = play(snap(before, 0), snap(after, 1))
    assert kinds(steps[1]) == [
        "run.started", "scenario.failed", "scenario.timed_out", "run.finished",
        "score.changed", "job.progress", "job.finished",
    ]  # fmt: skip
    finished = steps[1][-1]
    assert isinstance(finished, JobFinished) and [o.benchmark_run_id for o in finished.outcomes] == ["r0", "r1"]


def test_score_changed_only_between_numbers() -> None:
    def with_score(score: float | None) -> dict:
        return job(outcomes=[outcome("r1", "a", [scenario("s1", "COMPLETED", score)], score=score)])

    steps, _ = play(
        snap(with_score(None), 0), snap(with_score(0.5), 1), snap(with_score(0.75), 2), snap(with_score(0.75), 3)
    )
    assert steps[1] == []
    (changed,) = steps[2]
    assert changed.kind == "score.changed"
    # benchwatch's score of a finished run counts every scenario of the spec (3), the two that never ran as 0
    assert (changed.old_score, changed.new_score, changed.delta) == (0.166667, 0.25, 0.083333)  # type: ignore[union-attr]
    assert steps[3] == []


def test_a_retried_scenario_recovers() -> None:
    view = job(runs=[in_progress("r1", "a")])
    first = scenario_run("r1", "s1", "timeout", start=0)
    retry_running = scenario_run("r1", "s1", "running", start=100)
    retry_done = scenario_run("r1", "s1", "scored", start=100, score=1.0)
    steps, memory = play(
        snap(view, 0, {"r1": []}),
        snap(view, 1, {"r1": [first]}),
        snap(view, 2, {"r1": [retry_running, first]}),
        snap(view, 3, {"r1": [first, retry_done]}),
    )
    assert kinds(steps[1]) == ["scenario.timed_out", "job.progress"]
    assert "scenario.timed_out" not in kinds(steps[2])  # a retry in flight is not a second failure
    recovered = steps[3][0]
    assert isinstance(recovered, ScenarioRecovered)
    assert (recovered.previous_state, recovered.score, recovered.scenario_run_id) == ("TIMEOUT", 1.0, retry_done["id"])
    assert memory.unresolved == {}


def test_counters_sum_outcomes_and_scenario_runs_never_counting_a_run_twice() -> None:
    view = job(
        outcomes=[outcome("r1", "a", [scenario("s1", "COMPLETED", 1.0), scenario("s2", "CANCELED")])],
        runs=[in_progress("r1", "a", "completed"), in_progress("r2", "b")],
    )
    runs = {
        "r1": [
            scenario_run("r1", "s1", "completed", score=1.0),
            scenario_run("r1", "s3", "failed"),
        ],  # ignored: outcomes win
        "r2": [
            scenario_run("r2", "s1", "scored", score=1.0),
            scenario_run("r2", "s2", "completed", score=0.0),
            scenario_run("r2", "s3", "timeout"),
            scenario_run("r2", "s4", "canceled"),
            scenario_run("r2", "s5", "failed"),
            scenario_run("r2", "s6", "scoring"),
        ],
    }
    _, memory = play(snap(view, 0, runs))
    counters = memory.counters
    assert (counters.n_completed, counters.n_failed, counters.n_timeout, counters.n_canceled) == (3, 1, 1, 2)
    assert (counters.n_done, counters.n_expected) == (7, 6)
    steps, _ = play(snap(view, 0, runs), snap(view, 1, {}))  # scenario runs not fetched this time: counts hold
    assert steps[1] == []


def test_n_expected_is_null_without_a_spec() -> None:
    (first,), _ = play(snap(job(job_spec=None), 0))
    assert first[0].n_expected is None  # type: ignore[union-attr]


def test_the_same_input_gives_the_same_ids_and_ids_are_unique() -> None:
    timeline = [
        snap(job("queued"), 0),
        snap(job(runs=[in_progress("r1", "a")]), 1, {"r1": [scenario_run("r1", "s1", "failed")]}),
        snap(job("completed", outcomes=[outcome("r1", "a", [scenario("s1", "FAILED", reason="E")])]), 2),
    ]
    one, _ = play(*timeline)
    two, _ = play(*timeline)
    ids = [event.id for step in one for event in step]
    assert ids == [event.id for step in two for event in step]
    assert len(ids) == len(set(ids)) and all(i.startswith("ev_") for i in ids)


def test_the_same_fact_gets_the_same_id_whenever_and_by_whomever_observed() -> None:
    # Two replicas diff the same stored memory; they poll at different moments and see the same changes.
    start = diff(None, snap(job("queued"), 0)).memory
    change = job("running", runs=[in_progress("r1", "a")])
    runs = {"r1": [scenario_run("r1", "s1", "failed")]}
    early, late = diff(start, snap(change, 1_000, runs)), diff(start, snap(change, 29_000, runs))
    assert [e.kind for e in early.events] == ["run.started", "scenario.failed", "job.progress", "job.state_changed"]
    assert [e.id for e in early.events] == [e.id for e in late.events]
    assert [e.at_ms for e in early.events] != [e.at_ms for e in late.events]  # what differs is only when


def test_a_fact_that_recurs_gets_a_new_id() -> None:
    steps, _ = play(snap(job("queued"), 0), snap(job("running"), 1), snap(job("queued"), 2), snap(job("running"), 3))
    (first,), _, (again,) = steps[1:]
    assert (first.kind, again.kind) == ("job.state_changed", "job.state_changed")
    assert first.model_dump(exclude={"id", "at_ms"}) == again.model_dump(exclude={"id", "at_ms"})
    assert first.id != again.id


def test_unchanged_fingerprint_skips_the_diff() -> None:
    view = snap(job(), 0)
    first = diff(None, Snapshot(job=view.job, at_ms=1, fingerprint="abc"))
    changed_job = BenchmarkJobView.model_validate(job("completed"))
    same = diff(first.memory, Snapshot(job=changed_job, at_ms=2, fingerprint="abc"))
    assert same.events == () and same.memory.last_seen_ms == 2  # the bytes were equal: trust the hash


def test_events_serialise_with_the_envelope_first_and_round_trip() -> None:
    steps, _ = play(
        snap(job("queued"), 0),
        snap(job("completed", outcomes=[outcome("r1", "a", [scenario("s1", "FAILED", reason="E")])]), 1),
    )
    for event in [e for step in steps for e in step]:
        data = json.loads(event.model_dump_json())
        assert list(data)[:5] == ["id", "kind", "job_id", "job_name", "at_ms"]
        assert EVENT_ADAPTER.validate_python(data) == event


def test_warnings_are_returned_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _, memory = play(snap(job("completed"), 0))
    diff(memory, snap(job("running"), 1))
    assert caplog.records == []  # the diff is pure; the tracker logs


def test_a_followed_run_s_failure_reads_the_same_whichever_poll_saw_it_first() -> None:
    """Same facts, same content: a failure seen mid-run in scenario runs (no reason) and one first seen in the
    outcome because the mid-run poll failed give the same event; a run never followed keeps the reason."""
    during = job(runs=[in_progress("r1", "a")])
    after = job(
        outcomes=[outcome("r1", "a", [scenario("s1", "FAILED", reason="AgentError")])],
        runs=[in_progress("r1", "a", "completed")],
    )
    clean, _ = play(
        snap(during, 0, {"r1": []}),
        snap(during, 1, {"r1": [scenario_run("r1", "s1", "failed")]}),
        snap(after, 2, {"r1": [scenario_run("r1", "s1", "failed")]}),
    )
    faulty, _ = play(snap(during, 0, {"r1": []}), snap(after, 2, {"r1": [scenario_run("r1", "s1", "failed")]}))
    (seen_mid_run,) = [e for e in clean[1] if e.kind == "scenario.failed"]
    (seen_in_outcome,) = [e for e in faulty[1] if e.kind == "scenario.failed"]
    assert seen_in_outcome.failure_reason is None  # type: ignore[union-attr]
    same = {"kind", "benchmark_run_id", "agent_name", "scenario_definition_id", "failure_reason"}
    assert seen_mid_run.model_dump(include=same) == seen_in_outcome.model_dump(include=same)
    never_followed, _ = play(snap(job(state="queued"), 0), snap(after, 1))
    (from_outcome,) = [e for e in never_followed[1] if e.kind == "scenario.failed"]
    assert from_outcome.failure_reason is not None  # type: ignore[union-attr]

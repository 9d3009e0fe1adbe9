"""The diff over whole simulated lives: nothing missed, nothing twice, list order meaningless."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from tests.recording import record, to_snapshot
from watcher.core.clock import ManualClock
from watcher.core.events import Event
from watcher.core.memory import JobMemory
from watcher.diff.jobs import diff
from watcher.simulator import SimAgent, SimJobSpec, Simulator

SPECS = [
    SimJobSpec(name="retries", n_scenarios=40, n_attempts=2, fail_rate=0.3, timeout_rate=0.1, concurrency=6),
    SimJobSpec(name="cancelled", outcome="cancelled", end_after_s=900, n_scenarios=30, fail_rate=0.2),
    SimJobSpec(name="plain", n_scenarios=25, agents=[SimAgent(name="a"), SimAgent(name="b"), SimAgent(name="c")]),
]
LAST_EVENT_FOR = {"FAILED": "scenario.failed", "TIMEOUT": "scenario.timed_out", "CANCELED": "scenario.canceled"}


def _events(lines: list[dict[str, Any]]) -> list[Event]:
    memories: dict[str, JobMemory] = {}
    events: list[Event] = []
    for line in lines:
        snapshot = to_snapshot(line)
        result = diff(memories.get(snapshot.job.id), snapshot)
        memories[snapshot.job.id] = result.memory
        events.extend(result.events)
    return events


def _lifetime(step_ms: int, seed: int = 11) -> tuple[Simulator, list[dict[str, Any]]]:
    clock = ManualClock()
    sim = Simulator(seed=seed, clock=clock)
    plans = [sim.add_job(spec) for spec in SPECS]
    return sim, record(sim, clock, plans, steps=3 * 3600 * 1000 // step_ms, step_ms=step_ms)


def _shuffled(line: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    job = dict(line["job"])
    for key in ("in_progress_runs", "benchmark_outcomes"):
        if job[key]:
            job[key] = rng.sample(job[key], len(job[key]))
    if job["benchmark_outcomes"]:
        job["benchmark_outcomes"] = [
            {**o, "scenario_outcomes": rng.sample(o["scenario_outcomes"], len(o["scenario_outcomes"]))}
            for o in job["benchmark_outcomes"]
        ]
    runs = {run_id: rng.sample(views, len(views)) for run_id, views in reversed(line["scenario_runs"].items())}
    return {"at_ms": line["at_ms"], "job": job, "scenario_runs": runs}


@pytest.mark.parametrize("step_ms", [20_000, 120_000])
@pytest.mark.slow
def test_every_fact_of_a_life_is_told_exactly_once(step_ms: int) -> None:
    sim, lines = _lifetime(step_ms)
    events = _events(lines)
    by_kind = Counter((event.job_name, event.kind) for event in events)
    for plan in sim.jobs():
        final = sim.job_view(plan.job_id)
        assert final["state"] in ("completed", "cancelled")
        assert by_kind[(plan.name, "job.discovered")] == 1
        assert by_kind[(plan.name, "job.finished")] == 1
        assert by_kind[(plan.name, "run.started")] == len(plan.runs)
        assert by_kind[(plan.name, "run.finished")] == len(plan.runs)
        job_events = [event for event in events if event.job_id == plan.job_id]
        last_bad: dict[tuple[str, str], str] = {}
        for event in job_events:
            if event.kind.startswith("scenario."):
                key = (event.benchmark_run_id, event.scenario_definition_id)  # type: ignore[union-attr]
                last_bad[key] = event.kind
        for result in final["benchmark_outcomes"]:
            for outcome in result["scenario_outcomes"]:
                told = last_bad.get((result["benchmark_run_id"], outcome["scenario_definition_id"]))
                if outcome["state"] == "COMPLETED":
                    assert told in (None, "scenario.recovered")
                else:
                    assert told == LAST_EVENT_FOR[outcome["state"]]
        progress = [event for event in job_events if event.kind == "job.progress"]
        assert progress, "a running job reports progress"
        totals = progress[-1]
        assert totals.n_done == sum(  # type: ignore[union-attr]
            r["n_completed"]
            + r["n_failed"]
            + r["n_timeout"]
            + sum(s["state"] == "CANCELED" for s in r["scenario_outcomes"])
            for r in final["benchmark_outcomes"]
        )


@pytest.mark.slow
def test_recoveries_happen_in_a_life_with_retries() -> None:
    _, lines = _lifetime(20_000)
    assert any(event.kind == "scenario.recovered" for event in _events(lines))


@pytest.mark.slow
def test_list_order_carries_no_meaning() -> None:
    _, lines = _lifetime(60_000)
    rng = random.Random(5)
    assert _events([_shuffled(line, rng) for line in lines]) == _events(lines)


@pytest.mark.slow
def test_polling_more_often_never_repeats_an_event() -> None:
    _, lines = _lifetime(20_000)
    doubled = [line for line in lines for _ in range(2)]
    assert [e.model_dump(exclude={"id"}) for e in _events(doubled)] == [
        e.model_dump(exclude={"id"}) for e in _events(lines)
    ]

"""One honest score (watcher/core/score.py): failed, timed-out and canceled scenarios count 0, a finished run counts
every scenario of its spec — and everything that shows or gates on a score uses it, never the API's average over
completed scenarios only."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.conftest import FakeSleep
from tests.test_wait import _json_view, _lines, _wait
from watcher.cli.wait.defaults import EXIT_THRESHOLD_MISSED
from watcher.cli.wait.model import Thresholds
from watcher.core.models import BenchmarkJobView, BenchmarkOutcome, ScenarioRunState
from watcher.core.scenario_runs import RunScenarios, ScenarioRunStatus, _Score
from watcher.core.score import outcome_score, running_score
from watcher.core.snapshot import Snapshot
from watcher.diff.jobs import diff
from watcher.diff.summary import summarize
from watcher.simulator import SimAgent, SimJobSpec, Simulator

IDS = [f"scn_{i:02d}" for i in range(12)]


def _outcome(states: list[tuple[str, float | None]], average: float | None = None, **counts: int) -> BenchmarkOutcome:
    scenarios = [
        {"scenario_definition_id": f"s{i}", "state": state, "score": score} for i, (state, score) in enumerate(states)
    ]
    completed = [score for state, score in states if state == "COMPLETED" and score is not None]
    if average is None and completed:
        average = sum(completed) / len(completed)
    return BenchmarkOutcome.model_validate(
        {
            "benchmark_run_id": "bmr_1",
            "agent_name": "claude-code",
            "n_completed": sum(1 for state, _ in states if state == "COMPLETED"),
            "n_failed": sum(1 for state, _ in states if state == "FAILED"),
            "n_timeout": sum(1 for state, _ in states if state == "TIMEOUT"),
            "average_score": average
            if average is not None
            else (sum(completed) / len(completed) if completed else None),
            "scenario_outcomes": scenarios,
            **counts,
        }
    )


def test_failed_timed_out_and_canceled_scenarios_count_zero() -> None:
    # the Slack header: 4 of 16 completed at 1.0, 12 failed — the API says 1.000
    run = _outcome([("COMPLETED", 1.0)] * 4 + [("FAILED", None)] * 12)
    assert run.average_score == 1.0 and outcome_score(run, 16) == 0.25
    mixed = _outcome([("COMPLETED", 0.9)] * 5 + [("FAILED", None)] * 6 + [("TIMEOUT", None), ("CANCELED", None)])
    assert outcome_score(mixed, None) == pytest.approx(4.5 / 13, abs=1e-6)


def test_a_finished_run_counts_every_scenario_of_the_spec() -> None:
    run = _outcome([("COMPLETED", 1.0), ("COMPLETED", 0.5)])  # 2 listed of a spec of 4: two never ran
    assert outcome_score(run, 4) == 0.375
    assert outcome_score(run, 1) == 0.75  # a spec smaller than what is listed never inflates the score


def test_without_scenario_outcomes_the_counters_and_average_give_it() -> None:
    run = BenchmarkOutcome(benchmark_run_id="r", agent_name="a", n_completed=5, n_failed=6, n_timeout=1,
                           average_score=0.9)  # fmt: skip
    assert outcome_score(run, 12) == 0.375
    assert outcome_score(run.model_copy(update={"average_score": None}), 12) is None  # unknowable, not 0
    nothing = BenchmarkOutcome(benchmark_run_id="r", agent_name="a")
    assert outcome_score(nothing, None) is None and outcome_score(nothing, 3) == 0.0


def test_a_running_score_is_over_final_scenarios_only() -> None:
    assert running_score([("COMPLETED", 1.0), ("FAILED", None), (None, None)]) == 0.5
    assert running_score([(None, None)]) is None
    assert running_score([("COMPLETED", None)]) is None  # being scored: not yet known


def _job(outcomes: list[dict[str, Any]], n_scenarios: int) -> BenchmarkJobView:
    return BenchmarkJobView.model_validate(
        {
            "id": "bmj_1",
            "name": "nightly",
            "state": "completed",
            "create_time_ms": 0,
            "job_spec": {"scenario_ids": IDS[:n_scenarios], "agent_configs": [{"name": "claude-code"}]},
            "benchmark_outcomes": outcomes,
        }
    )


def test_the_summary_rules_and_events_carry_the_score_and_the_average_under_its_own_name() -> None:
    run = _outcome([("COMPLETED", 1.0)] * 4 + [("FAILED", None)] * 12)
    job = _job([run.model_dump(mode="json")], 16)
    summary = summarize(job, diff(None, Snapshot(job=job, at_ms=1)).memory.counters, {}, "https://dash")
    (agent,) = summary.agents
    assert (agent.score, agent.average_score) == (0.25, 1.0)
    assert summary.scores == {"claude-code": 0.25} and summary.min_score == 0.25


async def test_wait_min_score_fails_an_agent_whose_completed_scenarios_alone_look_fine(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep
) -> None:
    """The issue's CI gate: 6 failed and 1 timed out of 12, 5 completed at 0.9 — the API's average is 0.9."""
    results: dict[str, Any] = {sid: 0.9 for sid in IDS[:5]} | {sid: "failed" for sid in IDS[5:11]}
    results[IDS[11]] = "timeout"
    agent = SimAgent(name="claude-code", results=results)
    plan = sim.add_job(SimJobSpec(name="gate", scenario_ids=IDS, agents=[agent], scenario_timeout_s=300))
    view, out, _ = _json_view()
    result = await _wait(sim_url, fake_sleep, view, job_id=plan.job_id, thresholds=Thresholds(min_score=0.5))
    assert result.exit_code == EXIT_THRESHOLD_MISSED
    (miss,) = result.misses
    assert (miss.subject, miss.value) == ("claude-code", 0.375)
    _, summary = _lines(out)
    (row,) = summary["agents"]
    assert (row["score"], row["average_score"]) == (0.375, 0.9)
    assert "claude-code score 0.375 < min-score 0.5" in summary["reason"]


def test_a_runs_score_so_far_counted_in_c_is_running_score_exactly() -> None:
    # `RunScenarios.running_score` (the summary's, per poll) must say what `running_score` says of the same latest
    # attempts: retries, runs not final yet, completed ones not scored yet (no result, or a result without a score).
    rng = random.Random(28)
    scores = (None, 0.0, 0.25, 1.0, 0.1, 0.7)
    told = set()
    for case in range(3000):
        statuses = []
        for n in range(rng.randrange(0, 12)):
            result = rng.choice((None, _Score(None), *(_Score(score) for score in scores[1:])))
            if rng.random() < 0.8 and result is not None and result.score is None:
                result = _Score(rng.choice(scores[1:]))  # unscored ones rare: most cases reach a number
            scenario = f"scn_{rng.randrange(0, 6)}"  # the same scenario again: a retry
            statuses.append(
                ScenarioRunStatus(f"sr_{case}_{n}", scenario, rng.choice(ScenarioRunState.ALL), None, n, None, result)
            )
        runs = RunScenarios.build(statuses)
        expected = running_score((status.outcome_state, status.score) for status in runs.latest)
        assert runs.running_score() == expected, statuses
        told.add("none" if expected is None else "score")
    assert told == {"none", "score"}  # both answers were compared

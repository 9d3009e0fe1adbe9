"""benchwatch's score of an agent: one definition, used by everything that shows or gates on a score.

The API's `average_score` is the mean over *completed* scenarios only: an agent that completed 4 of 16 scenarios
at 1.0 and failed the other 12 has an `average_score` of 1.0. benchwatch's score counts every scenario with a final
state, a failed, timed-out or canceled one as 0; once a run has finished, over every scenario of the job spec (one
that never ran counts 0 too). That agent scores 0.25.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from watcher.core.models import BenchmarkOutcome, ScenarioState

_FINAL_BAD = frozenset({ScenarioState.FAILED, ScenarioState.TIMEOUT, ScenarioState.CANCELED})


def outcome_score(outcome: BenchmarkOutcome, n_scenarios: int | None = None) -> float | None:
    """The score of a finished run: completed scenarios' scores summed, over every scenario with a final state or
    of the job spec (`n_scenarios`), whichever is more; None when nothing is known (no scenario, or completed
    scenarios whose scores are unknown)."""
    total = _completed_total(outcome)
    if total is None:
        return None
    finals = _n_final(outcome)
    denominator = max(finals, n_scenarios or 0)
    return _ratio(total, denominator)


def running_score(latest: Iterable[tuple[str | None, float | None]]) -> float | None:
    """The score so far of a run in progress, from each scenario's latest (state, score): the mean over those in
    a final state, a failed, timed-out or canceled one counting 0; None before any is final, or when a completed
    one has no score yet (it is being scored). (`RunScenarios.running_score` counts the same with its per-record
    work in C, for the summary of every poll; both end in `running_score_of`.)"""
    completed: list[float | None] = []
    finals = 0
    for state, score in latest:
        if state == ScenarioState.COMPLETED:
            completed.append(score)
            finals += 1
        elif state in _FINAL_BAD:
            finals += 1
    return running_score_of(completed, finals)


def running_score_of(completed_scores: list[float | None], finals: int) -> float | None:
    """`running_score` from what a caller has counted already: the scores of the latest attempts that completed (in
    their order) and how many latest attempts are in a final state."""
    if None in completed_scores:
        return None  # one is being scored
    return _ratio(sum(cast("list[float]", completed_scores)), finals)  # no None left


def _completed_total(outcome: BenchmarkOutcome) -> float | None:
    """The sum of the completed scenarios' scores: from the scenario outcomes when each has its score, else the
    API's average over completed scenarios times their number."""
    scenarios = outcome.scenario_outcomes or ()
    completed = [s.score for s in scenarios if s.state == ScenarioState.COMPLETED]
    if scenarios and all(score is not None for score in completed):
        return sum(score for score in completed if score is not None)
    if outcome.n_completed == 0:
        return 0.0
    if outcome.average_score is None:
        return None
    return outcome.average_score * outcome.n_completed


def _n_final(outcome: BenchmarkOutcome) -> int:
    """Scenarios of the run in a final state: its scenario outcomes when listed, else its counters."""
    listed = len(outcome.scenario_outcomes or ())
    counted = outcome.n_completed + outcome.n_failed + outcome.n_timeout
    return max(listed, counted)


def _ratio(total: float, count: int) -> float | None:
    if count <= 0:
        return None
    return round(min(max(total / count, 0.0), 1.0), 6)

"""A followed run's scenario runs as the diff reads them: decoded straight from the response bytes, reduced to
the latest attempt of each scenario, and compared with the previous poll of the same run.

A large job lists thousands of scenario runs per poll while a few percent change between polls. Validating each
into a full model and diffing every one cost 20 × parsing the bytes; instead the page is decoded (msgspec) into
`ScenarioRunStatus`, the few fields the diff reads — every other field is skipped without being built — and each
latest attempt in a final state is compared, by hash, with those the previous poll saw. Only those that differ go
to the diff: an unchanged one can tell nothing new (its final state is already in the job's memory), and one not
final yet tells nothing at all. (Two different attempts with equal 64-bit hashes would hide one change: odds of
about 2⁻⁶⁴ per pair, the same bet the response fingerprints make.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from operator import attrgetter, not_
from typing import Final

import msgspec

from watcher.core.models import ScenarioRunState, ScenarioRunView, ScenarioState
from watcher.core.score import running_score_of

RUN_STATE_AS_OUTCOME: Final = {
    ScenarioRunState.SCORED: ScenarioState.COMPLETED,
    ScenarioRunState.COMPLETED: ScenarioState.COMPLETED,
    ScenarioRunState.FAILED: ScenarioState.FAILED,
    ScenarioRunState.TIMEOUT: ScenarioState.TIMEOUT,
    ScenarioRunState.CANCELED: ScenarioState.CANCELED,
}
COUNT_SLOTS: Final = (ScenarioState.COMPLETED, ScenarioState.FAILED, ScenarioState.TIMEOUT, ScenarioState.CANCELED)

Counts = tuple[int, int, int, int]
_STATE: Final = attrgetter("state")
_RESULT: Final = attrgetter("scoring_contract_result")
_SCORE: Final = attrgetter("score")
_COMPLETED: Final = frozenset(
    state for state, outcome in RUN_STATE_AS_OUTCOME.items() if outcome == ScenarioState.COMPLETED
)  # the run states whose scenario counts as completed (scored, completed)
_SCENARIO_ID: Final = attrgetter("scenario_id")  # latest attempts by final state: completed, failed, timeout, canceled


# gc=False: statuses hold only strings, numbers and scores — no cycles — so the garbage collector need not track
# the hundreds of thousands a large cycle decodes (tracking them made every collection walk them all).
class _Score(msgspec.Struct, frozen=True, gc=False):
    score: float | None = None


class ScenarioRunStatus(msgspec.Struct, frozen=True, gc=False):
    """The fields of a scenario run the diff reads (`ScenarioRunView` has them all)."""

    id: str
    scenario_id: str
    state: str
    name: str | None = None
    start_time_ms: int | None = None
    duration_ms: int | None = None
    scoring_contract_result: _Score | None = None

    @property
    def score(self) -> float | None:
        """The scenario run's total score, once scored."""
        return self.scoring_contract_result.score if self.scoring_contract_result is not None else None

    @property
    def outcome_state(self) -> str | None:
        """The state as a scenario outcome would say it (`COMPLETED`, ...); None while not final."""
        return RUN_STATE_AS_OUTCOME.get(self.state)

    @classmethod
    def of(cls, view: ScenarioRunView) -> ScenarioRunStatus:
        """The status of a fully parsed scenario run."""
        score = _Score(view.score) if view.scoring_contract_result is not None else None
        return cls(view.id, view.scenario_id, view.state, view.name, view.start_time_ms, view.duration_ms, score)


@dataclass(frozen=True, slots=True)
class RunScenarios:
    """One followed run's scenario runs at one poll, as the diff needs them.

    `listed` holds every scenario run listed, `latest` the latest attempt of every scenario (a retry is a new
    scenario run). Only a latest attempt in a final state can tell the diff something — one still running changes
    its duration on every poll and means nothing yet — so `changed` holds the final latest attempts the previous
    poll of the run did not see exactly so (all of them when there was no previous poll), and `seen`, what the next
    poll compares with, their hashes.
    """

    listed: tuple[ScenarioRunStatus, ...]
    latest: tuple[ScenarioRunStatus, ...]
    changed: tuple[ScenarioRunStatus, ...]
    counts: Counts
    seen: frozenset[int]

    @classmethod
    def build(cls, statuses: Sequence[ScenarioRunStatus], previous: frozenset[int] | None = None) -> RunScenarios:
        """Reduce a run's scenario runs to their latest attempts and compare them with `previous`."""
        # map/compress/Counter keep the per-record work in C: this runs over every scenario run of every poll
        listed = tuple(statuses)  # no copy when given a tuple
        latest = latest_attempts(listed)
        states = list(map(_STATE, latest))
        final = tuple(compress(latest, map(RUN_STATE_AS_OUTCOME.__contains__, states)))
        hashes = list(map(hash, final))
        seen = frozenset(hashes)
        if previous is None:
            changed = final
        elif seen <= previous:
            changed = ()
        else:
            changed = tuple(compress(final, map(not_, map(previous.__contains__, hashes))))
        return cls(listed, latest, changed, count_states(states), seen)

    def running_score(self) -> float | None:
        """The run's score so far, as `watcher.core.score.running_score` defines it, with the per-record work in C:
        a large job's summary reads 2,000 latest attempts a poll, and the generator over each one's properties took
        15 ms of it — a third of a changed cycle on the `large` workload, inside the rule-state turn."""
        completed = compress(self.latest, map(_COMPLETED.__contains__, map(_STATE, self.latest)))
        results = list(map(_RESULT, completed))
        if None in results:
            return None  # completed, not scored yet
        return running_score_of(list(map(_SCORE, results)), sum(self.counts))


def latest_attempts(statuses: tuple[ScenarioRunStatus, ...]) -> tuple[ScenarioRunStatus, ...]:
    """The latest scenario run of each scenario: by start time, then id; input order when every one is alone."""
    if len(set(map(_SCENARIO_ID, statuses))) == len(statuses):
        return statuses  # the common case: one attempt per scenario
    latest: dict[str, ScenarioRunStatus] = {}
    for status in statuses:
        current = latest.get(status.scenario_id)
        if current is None or (status.start_time_ms or 0, status.id) > (current.start_time_ms or 0, current.id):
            latest[status.scenario_id] = status
    return tuple(latest.values())


def count_states(states: Iterable[str]) -> Counts:
    """How many of the latest attempts' states are completed, failed, timed out and canceled."""
    by_state = Counter(states)
    counts = dict.fromkeys(COUNT_SLOTS, 0)
    for state, number in by_state.items():
        outcome = RUN_STATE_AS_OUTCOME.get(state)
        if outcome is not None:
            counts[outcome] += number
    return (
        counts[ScenarioState.COMPLETED],
        counts[ScenarioState.FAILED],
        counts[ScenarioState.TIMEOUT],
        counts[ScenarioState.CANCELED],
    )


def from_views(runs: Mapping[str, Iterable[ScenarioRunView]]) -> dict[str, RunScenarios]:
    """Fully parsed scenario runs (replay files, tests) as the diff reads them, with no previous poll."""
    return {
        run_id: RunScenarios.build([ScenarioRunStatus.of(view) for view in views]) for run_id, views in runs.items()
    }

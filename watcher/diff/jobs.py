"""The diff: (what we knew about a job, a new snapshot) → (events, what we know now). Pure: no I/O, no clock.

Identity, never position: a run is its `benchmark_run_id`, a scenario is (`benchmark_run_id`,
`scenario_definition_id`), whether seen in the scenario runs of an in-progress run or in the outcomes of a finished
one. Outcomes are authoritative over scenario runs. The memory keeps only what the next diff needs: per run its
names, whether it finished and its score; the scenarios whose last final state was not COMPLETED; the counters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Final, TypedDict

from watcher.core.events import (
    Counters,
    Event,
    JobDiscovered,
    JobFinished,
    JobProgress,
    JobStateChanged,
    RunFinished,
    RunResult,
    RunStarted,
    ScenarioCanceled,
    ScenarioFailed,
    ScenarioFields,
    ScenarioRecovered,
    ScenarioTimedOut,
    ScoreChanged,
    event_id,
)
from watcher.core.failureclass import DEFAULT_FAILURE_CLASSES, FailureClasses
from watcher.core.memory import JobMemory, RunMemo
from watcher.core.models import (
    BenchmarkJobView,
    BenchmarkOutcome,
    FailureReason,
    JobState,
    ScenarioOutcome,
    ScenarioState,
)
from watcher.core.scenario_runs import RunScenarios, ScenarioRunStatus
from watcher.core.score import outcome_score
from watcher.core.snapshot import Snapshot

_BAD_STATES: Final = frozenset({ScenarioState.FAILED, ScenarioState.TIMEOUT, ScenarioState.CANCELED})
_SCORE_EPSILON: Final = 1e-9
MAX_COUNT: Final = 1_000_000  # far beyond any benchmark's scenarios: a larger counter is garbage, not progress
_COUNTER_FIELDS: Final = ("n_completed", "n_failed", "n_timeout")


@dataclass(frozen=True, slots=True)
class DiffResult:
    """The events a snapshot revealed, the memory to keep, and anything odd worth a warning."""

    events: tuple[Event, ...]
    memory: JobMemory
    warnings: tuple[str, ...] = ()


class _Envelope(TypedDict):
    id: str
    job_id: str
    job_name: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class _Observed:
    """One scenario's latest known status in a snapshot (`state` None while it is not final)."""

    run_id: str
    definition_id: str
    state: str | None
    name: str | None
    scenario_run_id: str | None
    failure_reason: FailureReason | None
    duration_ms: int | None
    score: float | None


def diff(
    memory: JobMemory | None,
    snapshot: Snapshot,
    classes: FailureClasses = DEFAULT_FAILURE_CLASSES,
    *,
    catch_up: bool = False,
) -> DiffResult:
    """Compare a snapshot with what we knew. The first snapshot of a job yields `job.discovered` only (a starting
    point), or with `catch_up` also everything it shows had happened since the job was created (`catch_up_diff`).
    `classes` says which failure class a failed, timed-out or canceled scenario's event carries."""
    if memory is None:
        return catch_up_diff(snapshot, classes) if catch_up else _discover(snapshot)
    if snapshot.fingerprint is not None and snapshot.fingerprint == memory.fingerprint:
        return DiffResult((), unchanged(memory, snapshot.at_ms))
    return _Differ(memory, snapshot, classes).run()


def unchanged(memory: JobMemory, at_ms: int) -> JobMemory:
    """The memory after a poll whose bytes were the same as last time's: seen again, nothing else."""
    polls = memory.polls_after_finish + 1 if memory.finished else 0
    return memory.model_copy(update={"last_seen_ms": at_ms, "polls_after_finish": polls})


def _discover(snapshot: Snapshot) -> DiffResult:
    job = snapshot.job
    outcomes, warnings = _outcomes_by_run(job)
    runs = _runs_seen(job, outcomes, {})
    observed = _observe(job, outcomes, snapshot.scenario_runs)
    runs = _with_counts(runs, outcomes, snapshot.scenario_runs)
    counters = _counters(job, outcomes, runs)
    unresolved = _apply_observed({}, observed)
    event = JobDiscovered(
        id=event_id(job.id, "job.discovered", ""),  # once per job: the first commit of its memory
        job_id=job.id,
        job_name=job.name,
        at_ms=snapshot.at_ms,
        state=job.state,
        **counters.model_dump(),
    )
    memory = JobMemory(
        job_id=job.id,
        job_name=job.name,
        state=job.state,
        finished=job.is_terminal,
        counters=counters,
        runs=_mark_finished(runs, outcomes, _n_scenarios_of(job)),
        unresolved=unresolved,
        first_seen_ms=snapshot.at_ms,
        last_seen_ms=snapshot.at_ms,
        last_change_ms=snapshot.at_ms,
        fingerprint=snapshot.fingerprint,
    )
    return DiffResult((event,), memory, tuple(warnings))


def catch_up_diff(snapshot: Snapshot, classes: FailureClasses = DEFAULT_FAILURE_CLASSES) -> DiffResult:
    """The first snapshot of a job that moved on before the watcher saw it: `job.discovered`, then every event a
    watcher that had watched the job from its creation would have told and the snapshot can show (runs started,
    each failed, timed-out or canceled scenario, runs finished, progress, the state it reached, `job.finished`) —
    all `late`.

    It is the diff of the snapshot against the memory of a job just created: no runs, nothing done, in the state
    the job is in now (or, for a job that ended, the state before its end: running if any run shows, else queued).
    That memory's last change is the job's creation, so every id is derived from the snapshot alone, and a replica
    or a restart that catches up on the same snapshot gives the same ids, which the store keeps once."""
    discovered = _discover(snapshot)
    created = created_memory(snapshot)
    caught_up = _Differ(created, snapshot, classes).run()
    events = tuple(event.model_copy(update={"late": True}) for event in (*discovered.events, *caught_up.events))
    memory = caught_up.memory.model_copy(
        update={"first_seen_ms": snapshot.at_ms, "last_change_ms": snapshot.at_ms, "fingerprint": snapshot.fingerprint}
    )
    return DiffResult(events, memory, (*discovered.warnings, *caught_up.warnings))


def created_memory(snapshot: Snapshot) -> JobMemory:
    """The memory of a job just created, as a watcher that saw it then would hold it: no runs, nothing done, in
    the state the job is in now (or, for a job that ended, the state before its end); its last change is the job's
    creation, so whatever is diffed from it gets ids derived from the snapshot alone."""
    job = snapshot.job
    return JobMemory(
        job_id=job.id,
        job_name=job.name,
        state=_state_before(job),
        finished=False,
        counters=Counters(n_expected=job.job_spec.n_expected if job.job_spec is not None else None),
        runs={},
        unresolved={},
        first_seen_ms=snapshot.at_ms,
        last_seen_ms=job.create_time_ms,
        last_change_ms=job.create_time_ms,
    )


def _state_before(job: BenchmarkJobView) -> str:
    """The state a job caught up on is diffed from: its own while it has not ended, else the one its end left."""
    if not job.is_terminal:
        return job.state
    return JobState.RUNNING if job.benchmark_outcomes or job.in_progress_runs else JobState.QUEUED


class _Differ:
    """One diff of a known job: builds the events in their fixed order."""

    def __init__(self, memory: JobMemory, snapshot: Snapshot, classes: FailureClasses) -> None:
        self.memory = memory
        self.snapshot = snapshot
        self.classes = classes
        self.job = snapshot.job
        self.outcomes, self.warnings = _outcomes_by_run(self.job)
        self.events: list[Event] = []

    def run(self) -> DiffResult:
        runs = _runs_seen(self.job, self.outcomes, self.memory.runs)
        observed = _observe(self.job, self.outcomes, self.snapshot.scenario_runs)
        runs = _with_counts(runs, self.outcomes, self.snapshot.scenario_runs)
        self._run_started(runs)
        self._scenarios(observed, runs)
        self._run_finished(runs)
        self._score_changed(runs)
        counters = _counters(self.job, self.outcomes, runs)
        self._progress(counters)
        finished = self._state()
        memory = self.memory.model_copy(
            update={
                "job_name": self.job.name,
                "state": self.job.state if not self.memory.finished else self.memory.state,
                "finished": finished,
                "counters": counters,
                "runs": _mark_finished(runs, self.outcomes, self._n_scenarios),
                "unresolved": _apply_observed(self.memory.unresolved, observed),
                "last_seen_ms": self.snapshot.at_ms,
                "last_change_ms": self.snapshot.at_ms if self.events else self.memory.last_change_ms,
                "fingerprint": self.snapshot.fingerprint,
                "polls_after_finish": self.memory.polls_after_finish + 1 if self.memory.finished else 0,
                "stalled": self.memory.stalled and not self.events,
                "blind_ms": 0 if self.events else self.memory.blind_ms,
                "vanished": False,
            }
        )
        return DiffResult(tuple(self.events), memory, tuple(self.warnings))

    def _envelope(self, kind: str, identity: str, value: str = "") -> _Envelope:
        """The envelope of an event; its id from the fact. A fact that can recur (a state entered again, a score
        back to an earlier number) also carries the time of the last change the stored memory records — the same
        for every replica diffing from that memory, unlike the observation time."""
        at_ms = self.snapshot.at_ms
        return _Envelope(
            id=event_id(self.job.id, kind, identity, value),
            job_id=self.job.id,
            job_name=self.job.name,
            at_ms=at_ms,
        )

    def _run_started(self, runs: Mapping[str, RunMemo]) -> None:
        for run_id in sorted(runs.keys() - self.memory.runs.keys()):
            memo = runs[run_id]
            self.events.append(
                RunStarted(
                    **self._envelope("run.started", run_id),
                    benchmark_run_id=run_id,
                    agent_name=memo.agent_name,
                    model_name=memo.model_name,
                )
            )

    def _scenarios(self, observed: Iterable[_Observed], runs: Mapping[str, RunMemo]) -> None:
        for observation in observed:
            seen = observation
            if runs[seen.run_id].counts is not None and seen.failure_reason is not None:
                # A followed run's failures are told from its scenario runs, which carry no reason; one first seen
                # in the outcome (the poll that would have seen it mid-run failed) is told the same way, so the
                # event does not depend on which poll saw it first. The reason is in the run's outcome.
                seen = replace(seen, failure_reason=None)
            previous = self.memory.unresolved.get(seen.run_id, {}).get(seen.definition_id)
            event = _scenario_event(seen, previous, runs[seen.run_id].agent_name, self._scenario_envelope, self.classes)
            if event is not None:
                self.events.append(event)

    def _scenario_envelope(self, kind: str, identity: str) -> _Envelope:
        # A scenario can fail, recover and fail again: its attempt's run id and the memory's version tell them apart.
        return self._envelope(kind, identity, self._since)

    @property
    def _since(self) -> str:
        """The stored memory's last change: what a recurring fact follows."""
        return str(self.memory.last_change_ms)

    def _run_finished(self, runs: Mapping[str, RunMemo]) -> None:
        for run_id, outcome in sorted(self.outcomes.items()):
            if self.memory.runs.get(run_id, RunMemo()).finished:
                continue
            result = _run_result(outcome, runs[run_id], self._n_scenarios)
            self.events.append(RunFinished(**self._envelope("run.finished", run_id), **dict(result)))

    @property
    def _n_scenarios(self) -> int | None:
        """Scenarios each run of the job's spec has: a finished run's score counts every one of them."""
        return _n_scenarios_of(self.job)

    def _score_changed(self, runs: Mapping[str, RunMemo]) -> None:
        for run_id, outcome in sorted(self.outcomes.items()):
            before = self.memory.runs.get(run_id, RunMemo())
            old, new = before.score, outcome_score(outcome, self._n_scenarios)
            if not before.finished or old is None or new is None or abs(new - old) <= _SCORE_EPSILON:
                continue
            self.events.append(
                ScoreChanged(
                    **self._envelope("score.changed", run_id, f"{old!r}->{new!r}@{self._since}"),
                    benchmark_run_id=run_id,
                    agent_name=runs[run_id].agent_name,
                    old_score=old,
                    new_score=new,
                    delta=round(new - old, 12),
                )
            )

    def _progress(self, counters: Counters) -> None:
        if counters != self.memory.counters:
            value = f"{counters.model_dump_json()}@{self._since}"
            regressed = _regressed_because(self.memory.counters, counters)
            self.events.append(
                JobProgress(**self._envelope("job.progress", "", value), **dict(counters), regressed_because=regressed)
            )

    def _state(self) -> bool:
        """Append the state event, if any; returns whether the job is now finished."""
        before, now = self.memory.state, self.job.state
        if self.memory.finished:
            if now != before:
                self.warnings.append(f"job {self.job.id} reported state {now!r} after finishing as {before!r}; ignored")
            return True
        if now == before:
            return False
        if now in JobState.TERMINAL:
            outcomes = tuple(
                _run_result(
                    outcome, RunMemo(agent_name=outcome.agent_name, model_name=outcome.model_name), self._n_scenarios
                )
                for _, outcome in sorted(self.outcomes.items())
            )
            self.events.append(
                JobFinished(
                    **self._envelope("job.finished", now),
                    from_state=before,
                    state=now,
                    failure_reason=self.job.failure_reason,
                    outcomes=outcomes,
                )
            )
            return True
        envelope = self._envelope("job.state_changed", before, f"{now}@{self._since}")
        self.events.append(JobStateChanged(**envelope, from_state=before, to_state=now))
        return False


_ScenarioEndClass = type[ScenarioFailed] | type[ScenarioTimedOut] | type[ScenarioCanceled]
_SCENARIO_EVENT_CLASSES: Final[dict[str, tuple[str, _ScenarioEndClass]]] = {
    ScenarioState.FAILED: ("scenario.failed", ScenarioFailed),
    ScenarioState.TIMEOUT: ("scenario.timed_out", ScenarioTimedOut),
    ScenarioState.CANCELED: ("scenario.canceled", ScenarioCanceled),
}


def _scenario_event(
    seen: _Observed,
    previous: str | None,
    agent_name: str | None,
    envelope: Callable[[str, str], _Envelope],
    classes: FailureClasses,
) -> Event | None:
    """The event a scenario's new status means, given its last unresolved final state."""
    failed = seen.state in _BAD_STATES and seen.state != previous
    recovered = seen.state == ScenarioState.COMPLETED and previous in _BAD_STATES
    if not failed and not recovered:
        return None  # most scenarios: checked before building anything
    key = f"{seen.run_id}/{seen.definition_id}/{seen.scenario_run_id or ''}"
    fields = ScenarioFields(
        benchmark_run_id=seen.run_id,
        agent_name=agent_name,
        scenario_definition_id=seen.definition_id,
        scenario_name=seen.name,
        scenario_run_id=seen.scenario_run_id,
        failure_reason=seen.failure_reason,
        # From what the event itself says (a followed run's carries no reason), so the same facts give the same class.
        failure_class=classes.classify(
            seen.state or "", seen.scenario_run_id, seen.failure_reason.exception_type if seen.failure_reason else None
        ),
        duration_ms=seen.duration_ms,
    )
    if failed and seen.state is not None:
        kind, event_class = _SCENARIO_EVENT_CLASSES[seen.state]
        return event_class(**envelope(kind, key), **dict(fields))
    return ScenarioRecovered(
        **envelope("scenario.recovered", key), **dict(fields), score=seen.score, previous_state=previous
    )


def _regressed_because(before: Counters, now: Counters) -> str | None:
    """Why `n_done` went down, if it did: a retry (a failed, timed-out or canceled scenario runs again, so it
    is no longer counted as done), else the API reporting fewer than before."""
    if now.n_done >= before.n_done:
        return None
    ended_badly = ("n_failed", "n_timeout", "n_canceled")
    if any(getattr(now, name) < getattr(before, name) for name in ended_badly):
        return "retry"
    return "api_reported_fewer"


def _outcomes_by_run(job: BenchmarkJobView) -> tuple[dict[str, BenchmarkOutcome], list[str]]:
    """Outcomes by run id; a run listed twice counts once (the first listing). Counters out of range (negative,
    or absurdly large) are clamped into it, with a warning: one bad number must not poison every sum after it."""
    by_run: dict[str, BenchmarkOutcome] = {}
    warnings: list[str] = []
    for outcome in job.benchmark_outcomes or ():
        if outcome.benchmark_run_id in by_run:
            continue
        clamped = _clamped(outcome)
        if clamped is not outcome:
            counts = ", ".join(f"{name}={getattr(outcome, name)}" for name in _COUNTER_FIELDS)
            warnings.append(
                f"job {job.id[:80]!r} run {outcome.benchmark_run_id[:80]!r}: counters out of range ({counts}); "
                f"clamped to 0..{MAX_COUNT}"
            )
        scored = _scores_checked(clamped)
        if scored is not clamped:
            warnings.append(
                f"job {job.id[:80]!r} run {outcome.benchmark_run_id[:80]!r}: scores outside 0..1 "
                f"(average_score={outcome.average_score!r}); read as unknown"
            )
        by_run[outcome.benchmark_run_id] = scored
    return by_run, warnings


def _clamped(outcome: BenchmarkOutcome) -> BenchmarkOutcome:
    """The outcome with its counters within 0..MAX_COUNT (the same object when they already were)."""
    fixed = {
        name: min(max(getattr(outcome, name), 0), MAX_COUNT)
        for name in _COUNTER_FIELDS
        if not 0 <= getattr(outcome, name) <= MAX_COUNT
    }
    return outcome.model_copy(update=fixed) if fixed else outcome


def _is_score(value: float | None) -> bool:
    return value is None or (math.isfinite(value) and 0.0 <= value <= 1.0)


def _scores_checked(outcome: BenchmarkOutcome) -> BenchmarkOutcome:
    """The outcome with every score outside 0..1 (or not finite) read as unknown (None): a score of 1e308 is
    garbage, and clamping it to 1.0 would report a perfect run. The same object when every score was fine."""
    scenarios = outcome.scenario_outcomes or ()
    if _is_score(outcome.average_score) and all(_is_score(scenario.score) for scenario in scenarios):
        return outcome
    fixed_scenarios = tuple(
        scenario if _is_score(scenario.score) else scenario.model_copy(update={"score": None}) for scenario in scenarios
    )
    average = outcome.average_score if _is_score(outcome.average_score) else None
    update: dict[str, object] = {"average_score": average}
    if outcome.scenario_outcomes is not None:
        update["scenario_outcomes"] = fixed_scenarios
    return outcome.model_copy(update=update)


def _runs_seen(
    job: BenchmarkJobView, outcomes: Mapping[str, BenchmarkOutcome], known: Mapping[str, RunMemo]
) -> dict[str, RunMemo]:
    """Every run known so far, with the best names we have (outcomes win over in-progress agent configs)."""
    runs = dict(known)
    for run in job.in_progress_runs or ():
        memo = runs.get(run.benchmark_run_id, RunMemo())
        runs[run.benchmark_run_id] = memo.model_copy(
            update={
                "agent_name": memo.agent_name or run.agent_name,
                "model_name": memo.model_name or run.model_name,
            }
        )
    for run_id, outcome in outcomes.items():
        memo = runs.get(run_id, RunMemo())
        runs[run_id] = memo.model_copy(
            update={"agent_name": outcome.agent_name, "model_name": outcome.model_name or memo.model_name}
        )
    return runs


def _observe(
    job: BenchmarkJobView,
    outcomes: Mapping[str, BenchmarkOutcome],
    scenario_runs: Mapping[str, RunScenarios],
) -> list[_Observed]:
    """Every scenario's latest status that may tell something, sorted by identity: outcomes for finished runs,
    else the latest attempts that changed since the previous poll (one that did not is already in the memory)."""
    observed = [_from_outcome(run_id, s) for run_id, o in outcomes.items() for s in o.scenario_outcomes or ()]
    for run_id, scenarios in scenario_runs.items():
        if run_id not in outcomes:
            observed.extend(_from_scenario_run(run_id, status) for status in scenarios.changed)
    observed.sort(key=lambda seen: (seen.run_id, seen.definition_id))
    return observed


def _from_outcome(run_id: str, outcome: ScenarioOutcome) -> _Observed:
    return _Observed(
        run_id=run_id,
        definition_id=outcome.scenario_definition_id,
        state=outcome.state,
        name=outcome.scenario_name,
        scenario_run_id=outcome.scenario_run_id,
        failure_reason=outcome.failure_reason,
        duration_ms=outcome.duration_ms,
        score=outcome.score,
    )


def _from_scenario_run(run_id: str, status: ScenarioRunStatus) -> _Observed:
    return _Observed(
        run_id=run_id,
        definition_id=status.scenario_id,
        state=status.outcome_state,
        name=status.name,
        scenario_run_id=status.id,
        failure_reason=None,
        duration_ms=status.duration_ms,
        score=status.score,
    )


def _with_counts(
    runs: dict[str, RunMemo], outcomes: Mapping[str, BenchmarkOutcome], scenario_runs: Mapping[str, RunScenarios]
) -> dict[str, RunMemo]:
    """Remember each in-progress run's counts from the scenario runs fetched this time."""
    updated = dict(runs)
    for run_id, scenarios in scenario_runs.items():
        if run_id not in outcomes:
            memo = updated.get(run_id, RunMemo())
            updated[run_id] = memo.model_copy(update={"counts": scenarios.counts})
    return updated


def _counters(job: BenchmarkJobView, outcomes: Mapping[str, BenchmarkOutcome], runs: Mapping[str, RunMemo]) -> Counters:
    """Sum over all runs: outcomes for finished runs, the last scenario-run counts for the others."""
    completed = failed = timeout = canceled = 0
    for outcome in outcomes.values():
        completed += outcome.n_completed
        failed += outcome.n_failed
        timeout += outcome.n_timeout
        canceled += sum(1 for s in outcome.scenario_outcomes or () if s.state == ScenarioState.CANCELED)
    for run_id, memo in runs.items():
        if run_id not in outcomes and memo.counts is not None:
            completed, failed, timeout, canceled = (
                total + part for total, part in zip((completed, failed, timeout, canceled), memo.counts, strict=True)
            )
    return Counters(
        n_completed=completed,
        n_failed=failed,
        n_timeout=timeout,
        n_canceled=canceled,
        n_done=completed + failed + timeout + canceled,
        n_expected=job.job_spec.n_expected if job.job_spec is not None else None,
    )


def _apply_observed(
    unresolved: Mapping[str, Mapping[str, str]], observed: Iterable[_Observed]
) -> dict[str, dict[str, str]]:
    """Scenarios whose last final state was bad; a completed one leaves, a not-yet-final one keeps its entry."""
    result = {run_id: dict(states) for run_id, states in unresolved.items()}
    for seen in observed:
        if seen.state in _BAD_STATES:
            result.setdefault(seen.run_id, {})[seen.definition_id] = seen.state
        elif seen.state == ScenarioState.COMPLETED and seen.definition_id in result.get(seen.run_id, {}):
            del result[seen.run_id][seen.definition_id]
    return {run_id: states for run_id, states in result.items() if states}


def _mark_finished(
    runs: Mapping[str, RunMemo], outcomes: Mapping[str, BenchmarkOutcome], n_scenarios: int | None
) -> dict[str, RunMemo]:
    marked = dict(runs)
    for run_id, outcome in outcomes.items():
        update = {
            "finished": True,
            "average_score": outcome.average_score,
            "score": outcome_score(outcome, n_scenarios),
            "counts": None,
        }
        marked[run_id] = marked[run_id].model_copy(update=update)
    return marked


def _n_scenarios_of(job: BenchmarkJobView) -> int | None:
    return len(job.job_spec.scenario_ids) if job.job_spec is not None else None


def _run_result(outcome: BenchmarkOutcome, memo: RunMemo, n_scenarios: int | None) -> RunResult:
    return RunResult(
        benchmark_run_id=outcome.benchmark_run_id,
        agent_name=outcome.agent_name or memo.agent_name,
        model_name=outcome.model_name or memo.model_name,
        score=outcome_score(outcome, n_scenarios),
        average_score=outcome.average_score,
        n_completed=outcome.n_completed,
        n_failed=outcome.n_failed,
        n_timeout=outcome.n_timeout,
        duration_ms=outcome.duration_ms,
    )

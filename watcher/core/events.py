"""Events: what changed about a job, as frozen, typed values in a union discriminated by `kind`.

Each serialises to one JSON object: the envelope (`id`, `kind`, `job_id`, `job_name`, `at_ms`) first, then the
kind's fields in a fixed order. Ids are derived from the fact, not from when it was observed (`event_id`), so the
same snapshots always give the same ids, and so do two replicas that observe the same change.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Annotated, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from watcher.core.comparison import ComparisonFields
from watcher.core.failureclass import FailureClass
from watcher.core.models import FailureReason


class EventBase(BaseModel):
    """The envelope every event carries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    kind: str
    job_id: str
    job_name: str
    at_ms: int = Field(description="observation time of the snapshot that revealed the event (ms since epoch)")
    late: bool = Field(
        False,
        description="told when the watcher first saw a job that had already moved on (it was created while the "
        "watcher was down, or between two discovery passes): the fact happened before at_ms",
    )


class Counters(BaseModel):
    """A job's scenario counters, summed over all its runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_completed: int = 0
    n_failed: int = 0
    n_timeout: int = 0
    n_canceled: int = 0
    n_done: int = Field(0, description="scenarios in a final state (completed, failed, timed out or canceled)")
    n_expected: int | None = Field(None, description="scenario ids × agent configs; null when the spec is unknown")


class RunResult(BaseModel):
    """The fields of `run.finished`, also listed in `job.finished.outcomes`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    benchmark_run_id: str
    agent_name: str | None
    model_name: str | None
    score: float | None = Field(
        None,
        description="benchwatch's score: the mean over every scenario of the job spec, a failed, timed-out or "
        "canceled one (or one that never ran) counting 0 (docs/events.md, 'The score')",
    )
    average_score: float | None = Field(
        description="the API's average_score: the mean over completed scenarios only — not the run's score"
    )
    n_completed: int
    n_failed: int
    n_timeout: int
    duration_ms: int | None


class JobDiscovered(Counters, EventBase):
    """The first snapshot of a job this watcher sees; nothing already in it is announced as new."""

    kind: Literal["job.discovered"] = "job.discovered"
    state: str


class JobStateChanged(EventBase):
    """The job moved to a non-terminal (or unknown) state."""

    kind: Literal["job.state_changed"] = "job.state_changed"
    from_state: str
    to_state: str


class JobFinished(EventBase):
    """The job reached completed, failed, cancelled or timeout. A job finishes once."""

    kind: Literal["job.finished"] = "job.finished"
    from_state: str
    state: str
    failure_reason: str | None
    outcomes: tuple[RunResult, ...]


class RunStarted(EventBase):
    """A benchmark run id seen for the first time."""

    kind: Literal["run.started"] = "run.started"
    benchmark_run_id: str
    agent_name: str | None
    model_name: str | None


class RunFinished(RunResult, EventBase):
    """A run's outcome appeared in `benchmark_outcomes` for the first time."""

    kind: Literal["run.finished"] = "run.finished"


class ScenarioFields(BaseModel):
    """What identifies and describes one scenario of one run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    benchmark_run_id: str
    agent_name: str | None
    scenario_definition_id: str
    scenario_name: str | None
    scenario_run_id: str | None
    failure_reason: FailureReason | None
    failure_class: FailureClass | None = Field(
        None,
        description="setup (failed before the agent ran), timeout or agent, for a scenario that failed, timed out "
        "or was canceled (docs/regressions.md); null for a recovery",
    )
    duration_ms: int | None


class ScenarioFailed(ScenarioFields, EventBase):
    """A scenario ended FAILED."""

    kind: Literal["scenario.failed"] = "scenario.failed"


class ScenarioTimedOut(ScenarioFields, EventBase):
    """A scenario ended TIMEOUT."""

    kind: Literal["scenario.timed_out"] = "scenario.timed_out"


class ScenarioCanceled(ScenarioFields, EventBase):
    """A scenario ended CANCELED."""

    kind: Literal["scenario.canceled"] = "scenario.canceled"


class ScenarioRecovered(ScenarioFields, EventBase):
    """A scenario seen failed, timed out or canceled later completed (the orchestrator retried it)."""

    kind: Literal["scenario.recovered"] = "scenario.recovered"
    score: float | None
    previous_state: str


class ScoreChanged(EventBase):
    """A finished run's score (benchwatch's, `run.finished.score`) changed from one number to another (outcomes that
    land or change after the run finished)."""

    kind: Literal["score.changed"] = "score.changed"
    benchmark_run_id: str
    agent_name: str | None
    old_score: float
    new_score: float
    delta: float


class JobCompared(ComparisonFields, EventBase):
    """A completed job compared with its baseline (the last earlier completed job of the same benchmark)."""

    kind: Literal["job.compared"] = "job.compared"


class ExceptionCount(BaseModel):
    """How many scenarios ended with one exception type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    exception_type: str
    count: int


class JobInfraDegraded(EventBase):
    """More of a job's finished scenarios failed in setup (before the agent ran) than `watch.infra_alert_ratio`
    allows: the platform let the agents down. Once per job."""

    kind: Literal["job.infra_degraded"] = "job.infra_degraded"
    n_setup: int = Field(description="scenarios of the finished runs that failed in setup")
    n_done: int = Field(description="scenarios of the finished runs in a final state")
    setup_ratio: float = Field(description="n_setup / n_done")
    infra_alert_ratio: float = Field(description="the configured ratio it exceeds")
    exception_types: tuple[ExceptionCount, ...] = Field(description="the setup failures by exception type, most first")


class JobProgress(Counters, EventBase):
    """The job's counters changed; `regressed_because` says why `n_done` went down, when it did."""

    kind: Literal["job.progress"] = "job.progress"
    regressed_because: Literal["retry", "api_reported_fewer"] | None = Field(
        None,
        description="why n_done is lower than before: a retried scenario is running again (retry), or the API "
        "reported fewer finished scenarios (api_reported_fewer); null when progress did not go back",
    )


class JobStalled(EventBase):
    """A running job showed no change for `stall_after`; once per stall (any change re-arms it)."""

    kind: Literal["job.stalled"] = "job.stalled"
    state: str
    stalled_for_ms: int
    last_change_ms: int
    n_done: int
    n_expected: int | None


class JobVanished(EventBase):
    """A watched job answered 404 twice in a row; it is no longer polled."""

    kind: Literal["job.vanished"] = "job.vanished"
    last_state: str


class WatcherApiUnreachable(EventBase):
    """Every call to the Runloop API has failed for `api_unreachable_after`: the watcher is blind.

    Not about one job: `job_id` and `job_name` are empty strings.
    """

    kind: Literal["watcher.api_unreachable"] = "watcher.api_unreachable"
    since_ms: int
    failures: int
    last_error: str


class WatcherApiRecovered(EventBase):
    """The API answers again after `watcher.api_unreachable`."""

    kind: Literal["watcher.api_recovered"] = "watcher.api_recovered"
    down_for_ms: int


Event = Annotated[
    JobDiscovered
    | JobStateChanged
    | JobFinished
    | RunStarted
    | RunFinished
    | ScenarioFailed
    | ScenarioTimedOut
    | ScenarioCanceled
    | ScenarioRecovered
    | ScoreChanged
    | JobCompared
    | JobInfraDegraded
    | JobProgress
    | JobStalled
    | JobVanished
    | WatcherApiUnreachable
    | WatcherApiRecovered,
    Field(discriminator="kind"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_KINDS: Final[tuple[str, ...]] = tuple(
    get_args(member.model_fields["kind"].annotation)[0] for member in get_args(get_args(Event)[0])
)
EventKind = StrEnum("EventKind", [(kind.replace(".", "_").upper(), kind) for kind in EVENT_KINDS])  # type: ignore[misc]
"""Every event kind, derived once from the union: `EventKind.JOB_FINISHED == "job.finished"`."""


def events_json_schema() -> str:
    """The JSON Schema of every event kind, as published in docs/events.schema.json."""
    schema = EVENT_ADAPTER.json_schema(mode="serialization")
    schema["title"] = "benchwatch event"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def event_id(job_id: str, kind: str, identity: str, value: str = "") -> str:
    """A stable id derived from the fact — the job, the kind, what it is about (`identity`: a run id, a scenario)
    and what it became (`value`) — never from who observed it or when: replicas, restarts and replays that observe
    one fact agree on its id, so the store records it once."""
    digest = hashlib.blake2b(f"{job_id}\x1f{kind}\x1f{identity}\x1f{value}".encode(), digest_size=12).hexdigest()
    return f"ev_{digest}"


def event_to_json(event: EventBase) -> str:
    """One event as a compact JSON object, fields in their stable order."""
    return event.model_dump_json()


def event_from_json(raw: str | bytes) -> Event:
    """Parse an event serialised by `event_to_json`."""
    return EVENT_ADAPTER.validate_json(raw)

"""A job's derived summary: what rules match on (failure rate, scores) and notifiers show (per-agent table, links)."""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from watcher.core.events import Counters
from watcher.core.failureclass import FailureClass, FailureCounts

MAX_FAILURE_EXAMPLES: Final = 5
MAX_EXAMPLE_MESSAGE_CHARS: Final = 1000  # an example's exception message, as kept in a summary


class AgentSummary(BaseModel):
    """One agent's run in the job: a row of the per-agent table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    benchmark_run_id: str
    agent_name: str | None
    model_name: str | None
    finished: bool
    score: float | None = Field(
        None,
        description="benchwatch's score (docs/events.md, 'The score'): failed, timed-out and canceled scenarios "
        "count 0; a finished run counts every scenario of the spec",
    )
    average_score: float | None = Field(description="the API's average over completed scenarios only")
    n_completed: int
    n_failed: int
    n_timeout: int
    duration_ms: int | None
    url: str


class FailureExample(BaseModel):
    """One failed scenario, to show under its exception type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scenario_name: str
    agent_name: str | None
    message: str
    url: str | None


class FailureGroup(BaseModel):
    """Failed and timed-out scenarios of one exception type (and failure class)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    exception_type: str
    failure_class: FailureClass = "agent"
    count: int
    examples: tuple[FailureExample, ...]


class JobSummary(Counters):
    """The job as a whole, now: state, counters, failure rate, scores per agent, failures by type, links."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    job_name: str
    state: str
    failure_reason: str | None
    failure_rate: float | None
    scores: dict[str, float]  # agent → benchwatch's score (not the API's average of completed scenarios)
    min_score: float | None
    agents: tuple[AgentSummary, ...]
    failures: tuple[FailureGroup, ...]
    failures_by_class: FailureCounts = Field(
        default_factory=FailureCounts,
        description="failed and timed-out scenarios by class: setup (before the agent ran), timeout, agent",
    )
    dashboard_url: str
    benchmark_id: str | None = None  # the benchmark the job runs; None for a job of explicit scenarios
    benchmark_name: str | None = None

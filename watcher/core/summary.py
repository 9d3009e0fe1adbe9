"""A job's derived summary: what rules match on (failure rate, scores) and notifiers show (per-agent table, links)."""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from watcher.core.events import Counters
from watcher.core.failureclass import FailureClass, FailureCounts

MAX_FAILURE_EXAMPLES: Final = 5


class AgentSummary(BaseModel):
    """One agent's run in the job: a row of the per-agent table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    benchmark_run_id: str
    agent_name: str | None
    model_name: str | None
    finished: bool
    average_score: float | None
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
    scores: dict[str, float]
    min_score: float | None
    agents: tuple[AgentSummary, ...]
    failures: tuple[FailureGroup, ...]
    failures_by_class: FailureCounts = Field(
        default_factory=FailureCounts,
        description="failed and timed-out scenarios by class: setup (before the agent ran), timeout, agent",
    )
    dashboard_url: str

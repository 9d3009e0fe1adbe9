"""Pydantic models of the Runloop benchmark API, read tolerantly.

The API grows: unknown fields are kept (``extra="allow"``), unknown state strings pass through as plain
strings, and a ``job_source`` / ``agent_config`` of an unknown ``type`` parses into a generic model instead of
failing. Only what a watcher cannot do without (ids, names, states) is required.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag


class JobState:
    """Known `BenchmarkJobView.state` values; any other string is accepted and passed on."""

    INITIALIZING: Final = "initializing"
    QUEUED: Final = "queued"
    RUNNING: Final = "running"
    COMPLETED: Final = "completed"
    FAILED: Final = "failed"
    CANCELLED: Final = "cancelled"
    TIMEOUT: Final = "timeout"
    TERMINAL: Final = frozenset({COMPLETED, FAILED, CANCELLED, TIMEOUT})
    ALL: Final = (INITIALIZING, QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT)


class RunState:
    """Known benchmark run states (note the single-l `canceled`)."""

    RUNNING: Final = "running"
    CANCELED: Final = "canceled"
    COMPLETED: Final = "completed"
    FAILED: Final = "failed"
    ALL: Final = (RUNNING, CANCELED, COMPLETED, FAILED)


class ScenarioState:
    """Known `ScenarioOutcome.state` values (upper case, final states only)."""

    COMPLETED: Final = "COMPLETED"
    FAILED: Final = "FAILED"
    TIMEOUT: Final = "TIMEOUT"
    CANCELED: Final = "CANCELED"
    ALL: Final = (COMPLETED, FAILED, TIMEOUT, CANCELED)


class ScenarioRunState:
    """Known `ScenarioRunView.state` values."""

    RUNNING: Final = "running"
    SCORING: Final = "scoring"
    SCORED: Final = "scored"
    COMPLETED: Final = "completed"
    CANCELED: Final = "canceled"
    TIMEOUT: Final = "timeout"
    FAILED: Final = "failed"
    FINAL: Final = frozenset({SCORED, COMPLETED, CANCELED, TIMEOUT, FAILED})
    ALL: Final = (RUNNING, SCORING, SCORED, COMPLETED, CANCELED, TIMEOUT, FAILED)


class ApiModel(BaseModel):
    """Base of every API model: immutable, keeps unknown fields, ignores nothing it was given. A number that is not
    finite (`1e400` overflows to infinity; `NaN`) is refused here, in the parser's own code at no cost to the usual
    answer; the readers (`watcher.api.decode.validate_finite`) then read it again as absent — None, or a counter's
    default — so it never reaches the store, where infinity would be written as `null` and not read back."""

    model_config = ConfigDict(
        extra="allow", frozen=True, validate_by_name=True, serialize_by_alias=True, allow_inf_nan=False
    )


class FailureReason(ApiModel):
    """Why a scenario failed or timed out."""

    exception_type: str
    exception_message: str = ""


class ScenarioOutcome(ApiModel):
    """Final outcome of one scenario of a finished benchmark run."""

    scenario_definition_id: str
    scenario_name: str = ""
    state: str
    scenario_run_id: str | None = None
    score: float | None = None
    duration_ms: int | None = None
    failure_reason: FailureReason | None = None


class BenchmarkOutcome(ApiModel):
    """Results of one finished benchmark run (one agent config) of a job."""

    benchmark_run_id: str
    agent_name: str
    model_name: str | None = None
    n_completed: int = 0
    n_failed: int = 0
    n_timeout: int = 0
    average_score: float | None = None
    duration_ms: int | None = None
    scenario_outcomes: tuple[ScenarioOutcome, ...] | None = None


class AgentEnvironment(ApiModel):
    """Environment of a job agent: variable values and secret *names* (never secret values)."""

    environment_variables: dict[str, str] | None = None
    secrets: dict[str, str] | None = None


class JobAgentConfig(ApiModel):
    """An agent configured in a job spec."""

    type: str = "job_agent"
    name: str
    agent_id: str | None = None
    model_name: str | None = None
    timeout_seconds: float | None = None
    # `kwargs` on the wire; renamed here because pydantic's generated __init__ takes **kwargs
    agent_kwargs: dict[str, Any] | None = Field(None, alias="kwargs")
    agent_environment: AgentEnvironment | None = None


class ExternalApiAgentConfig(ApiModel):
    """A run driven by an external API agent."""

    type: str = "external_api"
    info: str | None = None


class OtherAgentConfig(ApiModel):
    """An agent config of a type this version does not know; its fields are kept as extras."""

    type: str


def _agent_config_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in ("job_agent", "external_api") else "other"


RunAgentConfig = Annotated[
    Annotated[JobAgentConfig, Tag("job_agent")]
    | Annotated[ExternalApiAgentConfig, Tag("external_api")]
    | Annotated[OtherAgentConfig, Tag("other")],
    Discriminator(_agent_config_tag),
]


class InProgressRun(ApiModel):
    """A benchmark run of the job that has not (yet) left `in_progress_runs`."""

    benchmark_run_id: str
    state: str
    start_time_ms: int | None = None
    duration_ms: int | None = None
    agent_config: RunAgentConfig | None = None

    @property
    def agent_name(self) -> str | None:
        """The job agent's name, when the run is driven by one."""
        return self.agent_config.name if isinstance(self.agent_config, JobAgentConfig) else None

    @property
    def model_name(self) -> str | None:
        """The job agent's model, when known."""
        return self.agent_config.model_name if isinstance(self.agent_config, JobAgentConfig) else None


class HarborJobSource(ApiModel):
    """Job created from inline Harbor YAML."""

    type: str = "harbor"
    inline_yaml: str = ""


class BenchmarkJobSource(ApiModel):
    """Job created from a benchmark definition."""

    type: str = "benchmark"
    benchmark_id: str
    benchmark_name: str | None = None


class ScenariosJobSource(ApiModel):
    """Job created from an explicit list of scenario definitions."""

    type: str = "scenarios"
    scenario_ids: tuple[str, ...] = ()


class OtherJobSource(ApiModel):
    """A job source of a type this version does not know."""

    type: str


def _job_source_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in ("harbor", "benchmark", "scenarios") else "other"


JobSource = Annotated[
    Annotated[HarborJobSource, Tag("harbor")]
    | Annotated[BenchmarkJobSource, Tag("benchmark")]
    | Annotated[ScenariosJobSource, Tag("scenarios")]
    | Annotated[OtherJobSource, Tag("other")],
    Discriminator(_job_source_tag),
]


class OrchestratorConfig(ApiModel):
    """How the orchestrator runs a job's scenarios."""

    n_concurrent_trials: int | None = None
    n_attempts: int | None = None
    timeout_multiplier: float | None = None
    quiet: bool | None = None


class JobSpec(ApiModel):
    """The resolved specification of a job: scenarios × agents."""

    scenario_ids: tuple[str, ...] = ()
    agent_configs: tuple[JobAgentConfig, ...] = ()
    orchestrator_config: OrchestratorConfig | None = None

    @property
    def n_expected(self) -> int:
        """Scenario runs the job will make: scenarios × agent configs."""
        return len(self.scenario_ids) * len(self.agent_configs)


class BenchmarkJobView(ApiModel):
    """One benchmark job, as `GET /v1/benchmark_jobs/{id}` returns it."""

    id: str
    name: str
    state: str
    create_time_ms: int
    failure_reason: str | None = None
    job_source: JobSource | None = None
    job_spec: JobSpec | None = None
    benchmark_outcomes: tuple[BenchmarkOutcome, ...] | None = None
    in_progress_runs: tuple[InProgressRun, ...] | None = None

    @property
    def is_terminal(self) -> bool:
        """Whether the job reached a final state (completed, failed, cancelled, timeout)."""
        return self.state in JobState.TERMINAL


class BenchmarkJobListView(ApiModel):
    """One page of `GET /v1/benchmark_jobs`."""

    jobs: tuple[BenchmarkJobView, ...] = ()
    has_more: bool = False
    total_count: int | None = None


class BenchmarkRunView(ApiModel):
    """One benchmark run, as `GET /v1/benchmark_runs/{id}` returns it."""

    id: str
    state: str
    start_time_ms: int | None = None
    benchmark_id: str | None = None
    name: str | None = None
    duration_ms: int | None = None
    score: float | None = None
    metadata: dict[str, str] | None = None
    purpose: str | None = None


class ScoringFunctionResult(ApiModel):
    """Result of one scoring function of a scenario run."""

    score: float | None = None
    scoring_function_name: str | None = None
    output: str | None = None
    state: str | None = None


class ScoringContractResult(ApiModel):
    """Total score of a scenario run."""

    score: float | None = None
    scoring_function_results: tuple[ScoringFunctionResult, ...] | None = None


class ScenarioRunView(ApiModel):
    """One scenario run of a benchmark run (`GET /v1/benchmark_runs/{id}/scenario_runs`)."""

    id: str
    scenario_id: str
    state: str
    name: str | None = None
    devbox_id: str | None = None
    benchmark_run_id: str | None = None
    start_time_ms: int | None = None
    duration_ms: int | None = None
    scoring_contract_result: ScoringContractResult | None = None
    metadata: dict[str, str] | None = None
    purpose: str | None = None

    @property
    def score(self) -> float | None:
        """The scenario run's total score, once scored."""
        return self.scoring_contract_result.score if self.scoring_contract_result else None


class ScenarioRunListView(ApiModel):
    """One page of `GET /v1/benchmark_runs/{id}/scenario_runs`."""

    runs: tuple[ScenarioRunView, ...] = ()
    has_more: bool = False
    total_count: int | None = None

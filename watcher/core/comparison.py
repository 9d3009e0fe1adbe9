"""The vocabulary of comparing a finished job with its baseline: the outcomes kept of a job, and the comparison.

A job's outcomes are kept (as `JobOutcomes`, in the store) once it finished, so a later job can be compared with it
without asking the API again. A comparison is a pure function of two such records (and the history of earlier
ones): `watcher.diff.compare`.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field

PASSING_SCORE: Final = 1.0  # rl-cli: a scenario passes when COMPLETED with score 1.0


class ScenarioResult(BaseModel):
    """How one scenario of one agent's run ended."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scenario_definition_id: str
    scenario_name: str = ""
    state: str
    score: float | None = None
    scenario_run_id: str | None = None
    exception_type: str | None = Field(None, description="the failure reason's exception type, when it has one")

    @property
    def passed(self) -> bool:
        """rl-cli's pass: COMPLETED with score 1.0."""
        return self.state == "COMPLETED" and self.score is not None and self.score >= PASSING_SCORE

    @property
    def score_or_zero(self) -> float:
        """The score counted in an average: a scenario that did not complete scores 0."""
        return self.score if self.state == "COMPLETED" and self.score is not None else 0.0


class AgentOutcomes(BaseModel):
    """One agent's run of a job: every scenario's result, sorted by scenario definition id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent_name: str
    model_name: str | None = None
    benchmark_run_id: str
    scenarios: tuple[ScenarioResult, ...] = ()

    @property
    def key(self) -> tuple[str, str | None]:
        """How agents are paired across jobs: by agent name and model."""
        return (self.agent_name, self.model_name)


class JobOutcomes(BaseModel):
    """What is kept of a finished job to compare others with: identity, benchmark, and per agent every result."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    job_name: str
    state: str
    create_time_ms: int
    benchmark: str = Field(description="`benchmark:<id>`, else `scenarios:<digest of the scenario id set>`")
    benchmark_id: str | None = None
    agents: tuple[AgentOutcomes, ...] = ()

    def agent(self, key: tuple[str, str | None]) -> AgentOutcomes | None:
        """The agent paired with `key` (name, model), or None."""
        return next((agent for agent in self.agents if agent.key == key), None)


class ScenarioRef(BaseModel):
    """A scenario named in a comparison, with a link to its run when there is one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scenario_definition_id: str
    scenario_name: str
    url: str | None = None


class RegressionRef(ScenarioRef):
    """A regressed scenario; `new` when it passed in every one of the recent jobs compared over (not a relapse)."""

    new: bool = Field(False, description="passed in every one of the last `baseline.history` jobs that ran it")


class AgentComparison(BaseModel):
    """One paired agent: the scores, the change with its 95 % interval, the McNemar test, and the scenarios."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent_name: str
    model_name: str | None
    baseline_score: float = Field(description="mean score over the paired scenarios in the baseline (0 if not done)")
    score: float = Field(description="mean score over the paired scenarios now")
    delta: float = Field(description="score − baseline_score")
    ci_low: float = Field(description="lower end of the 95 % paired-bootstrap interval of delta")
    ci_high: float = Field(description="upper end of the 95 % paired-bootstrap interval of delta")
    p_value: float = Field(description="exact two-sided McNemar test on the pass/fail flips")
    p_adjusted: float | None = Field(
        None, description="p_value Holm–Bonferroni-adjusted across the agents compared (equal to it for one agent)"
    )
    significant: bool = Field(description="the interval excludes 0 and (when anything flipped) p_adjusted < 0.05")
    power: float | None = Field(
        None, description="the chance the McNemar test would see a drop of min_effect over these pairs"
    )
    power_warning: str | None = Field(
        None,
        description="in words, when the change is not significant and power is below 80 %: too few scenarios to "
        "detect a min_effect drop",
    )
    n_paired: int = Field(description="paired scenarios whose outcome in both jobs is the agent's")
    baseline_pass_rate: float
    pass_rate: float
    regressions: tuple[RegressionRef, ...] = Field(
        description="passed in the baseline, not now (flaky and setup failures excluded)"
    )
    fixes: tuple[ScenarioRef, ...] = Field(description="failed in the baseline, pass now (flaky ones excluded)")
    n_still_failing: int
    flaky: tuple[ScenarioRef, ...] = Field(
        description="flipped at least `baseline.flaky_flips` times (default: once) over the last `baseline.history` "
        "jobs before this one"
    )
    infra: tuple[ScenarioRef, ...] = Field(
        (), description="paired scenarios that failed in setup in either job: not the agent's, left out of it all"
    )
    new: tuple[ScenarioRef, ...] = Field(description="scenarios run now, not in the baseline")
    missing: tuple[ScenarioRef, ...] = Field(description="scenarios of the baseline not run now")


class ComparisonFields(BaseModel):
    """What a comparison of a job with its baseline says; the fields of the `job.compared` event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    baseline_job_id: str
    baseline_job_name: str
    benchmark: str
    significant: bool = Field(description="true when any agent's change is significant")
    n_regressions: int
    n_fixes: int
    n_infra: int = Field(0, description="paired scenarios left out because they failed in setup, over all agents")
    agents: tuple[AgentComparison, ...]
    unpaired_agents: tuple[str, ...] = Field(
        description="agents (name/model) not compared: in only one of the two jobs, or sharing no scenario with its "
        "counterpart ('(no scenario in common)' after its name)"
    )

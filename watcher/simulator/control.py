"""What the simulator's control endpoints read and compute: a batch of jobs in one request, and how far
every job has come at a time (the benchmarks measure the share of scenarios that changed between polls)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from watcher.simulator.plan import JobPlan, SimJobSpec
from watcher.simulator.views import job_state

_TERMINAL = frozenset({"completed", "failed", "cancelled", "timeout"})


class ClockAdvance(BaseModel):
    """`POST /_sim/clock`: move the manual clock forward."""

    model_config = ConfigDict(extra="forbid")

    advance_ms: int = Field(ge=0)


class WorkloadRequest(BaseModel):
    """`POST /_sim/workload`: `count` jobs from one spec, named `{name_prefix}-{i:05d}`, their ages (time since
    creation) spread evenly over `age_s` (one value for all when both ends are equal)."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=100_000)
    spec: SimJobSpec = Field(default_factory=SimJobSpec)
    name_prefix: str = Field("job", min_length=1)
    age_s: tuple[float, float] = (0.0, 0.0)

    @model_validator(mode="after")
    def _ages_in_order(self) -> WorkloadRequest:
        low, high = self.age_s
        if low < 0 or high < low:
            raise ValueError("age_s must be [low, high] with 0 <= low <= high")
        return self

    def jobs(self, now_ms: int) -> Iterable[tuple[SimJobSpec, int]]:
        """Each job's spec and creation time."""
        low_s, high_s = self.age_s
        for index in range(self.count):
            share = index / (self.count - 1) if self.count > 1 else 0.0
            age_ms = round((high_s - (high_s - low_s) * share) * 1000)  # oldest first: the list shows newest first
            yield self.spec.model_copy(update={"name": f"{self.name_prefix}-{index:05d}"}), now_ms - age_ms


def progress(
    plans: Iterable[JobPlan], now_ms: int, *, terminal_ids: bool = False, job_ids: bool = False
) -> dict[str, Any]:
    """How far the jobs have come at `now_ms`: terminal jobs, finished runs, started and finished scenario runs;
    with `terminal_ids`, also the ids of the terminal jobs; with `job_ids`, the ids of every job."""
    terminal: list[str] = []
    every: list[str] = []
    counts = dict.fromkeys(
        ("jobs", "jobs_terminal", "runs", "runs_finished", "scenario_runs_started", "scenario_runs_finished"), 0
    )
    for plan in plans:
        counts["jobs"] += 1
        every.append(plan.job_id)
        if job_state(plan, now_ms) in _TERMINAL:
            counts["jobs_terminal"] += 1
            terminal.append(plan.job_id)
        progress_ms = now_ms if plan.stop_ms is None else min(now_ms, plan.stop_ms)
        for run in plan.runs:
            counts["runs"] += 1
            counts["runs_finished"] += run.end_ms <= progress_ms
            for scenario in run.scenarios:
                for attempt in scenario.attempts:
                    if attempt.setup:
                        continue  # no scenario run: it failed in setup
                    counts["scenario_runs_started"] += attempt.start_ms <= progress_ms
                    counts["scenario_runs_finished"] += attempt.end_ms <= progress_ms
    return {
        "now_ms": now_ms,
        **counts,
        **({"terminal_ids": sorted(terminal)} if terminal_ids else {}),
        **({"job_ids": sorted(every)} if job_ids else {}),
    }

"""A simulated job's whole life, drawn once from a seed: which scenario runs when, and how each ends.

Everything the simulator serves is a pure function of a plan and a time, so a seed and a clock fix every
response: tests move the clock instead of sleeping.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Realistic scenario names and failure reasons; the watcher must cope with every one of them.
_SCENARIO_WORDS = (
    "fix-broken-makefile", "configure-nginx-tls", "sqlite-migration", "train-tiny-gpt2", "rust-borrow-fix",
    "k8s-helm-upgrade", "parse-pcap-flows", "django-n-plus-one", "git-bisect-regression", "cuda-oom-debug",
    "terraform-drift", "regex-log-parser", "flaky-test-hunt", "jwt-rotation", "webpack-to-vite",
)  # fmt: skip
_FAILURES = (
    ("NonZeroAgentExitCodeError", "Agent exited with code 1: 401 Unauthorized from model provider"),
    ("NonZeroAgentExitCodeError", "Agent exited with code 137: killed (out of memory)"),
    ("DevboxSetupError", "Devbox failed to start: image pull back-off"),
    ("ScoringError", "Scoring function 'tests' crashed: AssertionError in test_main.py"),
    ("RateLimitError", "429 Too Many Requests from model provider after 5 retries"),
)
_TIMEOUT_FAILURE = ("AgentTimeoutError", "Agent did not finish within the scenario timeout")
_SETUP_FAILURE = ("DevboxSetupError", "Devbox failed to start: image pull back-off")
SETUP_FAILURE_REASON = "Scenario setup failed: could not build the benchmark image (exit code 2)"
SCORING_SHARE = 0.15  # last part of a scored attempt spent in state "scoring"
SCORED_LINGER_MS = 10_000  # a scored run shows "scored" this long before "completed"

Outcome = Literal["completed", "failed", "cancelled", "timeout"]
ChosenResult = float | str  # a score, or one of CHOSEN_STATES, optionally with an exception type: "failed:MyError"
CHOSEN_STATES = ("failed", "timeout", "canceled", "setup")


class SimAgent(BaseModel):
    """One agent of a simulated job, with how well it does."""

    model_config = ConfigDict(extra="forbid")

    name: str
    model_name: str | None = None
    pass_rate: float = Field(0.7, ge=0, le=1)
    results: dict[str, ChosenResult] | None = Field(
        None,
        description="chosen outcomes by scenario id: a score (0..1), or failed/timeout/canceled/setup, optionally "
        "with the exception type the outcome reports (`failed:MyError`, `setup:MyEnvError`); the rest is drawn",
    )

    @field_validator("results")
    @classmethod
    def _results_known(cls, value: dict[str, ChosenResult] | None) -> dict[str, ChosenResult] | None:
        for scenario_id, result in (value or {}).items():
            if isinstance(result, float) and not 0 <= result <= 1:
                raise ValueError(f"results[{scenario_id}]: a score must be between 0 and 1, got {result:g}")
            if isinstance(result, str) and result.partition(":")[0] not in CHOSEN_STATES:
                raise ValueError(
                    f"results[{scenario_id}]: {result!r} is not a score nor one of {', '.join(CHOSEN_STATES)} "
                    "(with an optional ':ExceptionType')"
                )
        return value


class SimJobSpec(BaseModel):
    """What to simulate: agents, scenarios, failure rates, timing and how the job ends.

    Durations are in simulated seconds. `outcome` decides the job's end: `completed` when every run is
    done; `failed` (with no outcomes, only `failure_reason`), `cancelled` or `timeout` at `end_after_s`
    after the job starts running. `stall_after_s` freezes all progress that long after running starts.
    """

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    benchmark_id: str | None = Field(None, description="the job's source is this benchmark (else its scenario ids)")
    agents: list[SimAgent] = Field(
        default_factory=lambda: [
            SimAgent(name="claude-code", model_name="claude-sonnet-4-6", pass_rate=0.75),
            SimAgent(name="codex", model_name="gpt-5", pass_rate=0.65),
        ],
        min_length=1,
    )
    scenario_ids: list[str] | None = None
    n_scenarios: int = Field(20, ge=0, le=100_000)
    concurrency: int = Field(5, ge=1)
    n_attempts: int = Field(0, ge=0, le=5)
    fail_rate: float = Field(0.08, ge=0, le=1)
    timeout_rate: float = Field(0.04, ge=0, le=1)
    cancel_rate: float = Field(0.0, ge=0, le=1)
    scenario_duration_s: tuple[float, float] = (60.0, 600.0)
    scenario_timeout_s: float = Field(900.0, gt=0)
    init_s: float = Field(5.0, ge=0)
    queue_s: float = Field(10.0, ge=0)
    outcome: Outcome = "completed"
    end_after_s: float = Field(300.0, ge=0)
    stall_after_s: float | None = Field(None, ge=0)
    run_linger_s: float = Field(15.0, ge=0)
    completion_delay_s: float = Field(2.0, ge=0)
    outcome_delay_s: float = Field(
        0.0, ge=0, description="a finished run's outcome shows this much later (late outcomes)"
    )

    @model_validator(mode="after")
    def _results_name_known_scenarios(self) -> SimJobSpec:
        # A chosen result for a scenario the job does not run would silently do nothing: a test's typo.
        if self.scenario_ids is None:
            if any(agent.results for agent in self.agents):
                raise ValueError("agents' results need scenario_ids (results are keyed by scenario id)")
            return self
        known = set(self.scenario_ids)
        for agent in self.agents:
            unknown = sorted(set(agent.results or {}) - known)
            if unknown:
                raise ValueError(f"agent {agent.name!r}: results for unknown scenario ids {unknown[:3]}")
        return self


@dataclass(frozen=True, slots=True)
class Attempt:
    """One scenario run: when it runs and how it ends (`scored`, `failed`, `timeout` or `canceled`).

    `setup`: the scenario failed while its environment was set up, before the agent ran — the API then lists no
    scenario run for it, and its outcome has no `scenario_run_id`.
    """

    scenario_run_id: str
    start_ms: int
    end_ms: int
    final_state: str
    score: float | None
    failure: tuple[str, str] | None
    setup: bool = False


@dataclass(frozen=True, slots=True)
class ScenarioPlan:
    """One scenario of one run, with its attempts in order (more than one when retried)."""

    definition_id: str
    name: str
    attempts: tuple[Attempt, ...]


@dataclass(frozen=True, slots=True)
class RunPlan:
    """One benchmark run: one agent over every scenario."""

    run_id: str
    agent: SimAgent
    start_ms: int
    end_ms: int
    scenarios: tuple[ScenarioPlan, ...]


@dataclass(frozen=True, slots=True)
class JobPlan:
    """A job's whole simulated life."""

    job_id: str
    name: str
    spec: SimJobSpec
    create_ms: int
    running_ms: int
    runs: tuple[RunPlan, ...]
    scenario_ids: tuple[str, ...]
    stop_ms: int | None  # progress freezes here: the job failed, was cancelled, timed out or stalled
    end_ms: int | None  # the job turns terminal here; None while it never ends (a stall)
    final_state: str


def token(rng: random.Random, length: int = 16) -> str:
    """A random id suffix in the style of Runloop ids."""
    return "".join(rng.choices("0123456789ABCDEFGHJKMNPQRSTVWXYZ", k=length))


def make_plan(spec: SimJobSpec, *, job_id: str, name: str, create_ms: int, rng: random.Random) -> JobPlan:
    """Draw a job's life from `rng`: the same spec, times and rng state always give the same plan."""
    running_ms = create_ms + _ms(spec.init_s + spec.queue_s)
    scenario_ids = tuple(spec.scenario_ids or [f"scn_{token(rng, 12)}" for _ in range(spec.n_scenarios)])
    names = tuple(f"{_SCENARIO_WORDS[i % len(_SCENARIO_WORDS)]}-{i:03d}" for i in range(len(scenario_ids)))
    scenarios = tuple(zip(scenario_ids, names, strict=True))
    runs = tuple(
        _plan_run(spec, agent, running_ms + index * 1000, scenarios, rng) for index, agent in enumerate(spec.agents)
    )
    stop_ms, end_ms = _stop_and_end(spec, running_ms, runs)
    final_state = "running" if end_ms is None else spec.outcome
    return JobPlan(job_id, name, spec, create_ms, running_ms, runs, scenario_ids, stop_ms, end_ms, final_state)


def _stop_and_end(spec: SimJobSpec, running_ms: int, runs: tuple[RunPlan, ...]) -> tuple[int | None, int | None]:
    natural_end = max((run.end_ms for run in runs), default=running_ms) + _ms(spec.completion_delay_s)
    stall_ms = None if spec.stall_after_s is None else running_ms + _ms(spec.stall_after_s)
    if spec.outcome != "completed":
        end_ms = running_ms + _ms(spec.end_after_s)
        if stall_ms is not None and stall_ms < end_ms:
            return stall_ms, None
        return end_ms, end_ms
    if stall_ms is not None and stall_ms < natural_end:
        return stall_ms, None
    return None, natural_end


def _plan_run(
    spec: SimJobSpec,
    agent: SimAgent,
    start_ms: int,
    scenarios: tuple[tuple[str, str], ...],
    rng: random.Random,
) -> RunPlan:
    run_token = token(rng)
    slots = [start_ms] * min(spec.concurrency, max(1, len(scenarios)))
    heapq.heapify(slots)
    planned = []
    for index, (definition_id, name) in enumerate(scenarios):
        slot_free_ms = heapq.heappop(slots)
        run_id_prefix = f"scr_{run_token}{index:05d}"
        chosen = (agent.results or {}).get(definition_id)
        if chosen is None:
            attempts = _plan_attempts(spec, agent, slot_free_ms, run_id_prefix, rng)
        else:
            attempts = (_chosen_attempt(spec, chosen, slot_free_ms, f"{run_id_prefix}0", rng),)
        heapq.heappush(slots, attempts[-1].end_ms + 1000)
        planned.append(ScenarioPlan(definition_id, name, attempts))
    end_ms = max((s.attempts[-1].end_ms for s in planned), default=start_ms)
    return RunPlan(f"bmr_{run_token}", agent, start_ms, end_ms, tuple(planned))


def _plan_attempts(
    spec: SimJobSpec, agent: SimAgent, start_ms: int, id_prefix: str, rng: random.Random
) -> tuple[Attempt, ...]:
    attempts: list[Attempt] = []
    for number in range(spec.n_attempts + 1):
        attempt = _draw_attempt(spec, agent, start_ms, f"{id_prefix}{number}", rng)
        attempts.append(attempt)
        if attempt.final_state in ("scored", "canceled"):
            break
        start_ms = attempt.end_ms + 1000
    return tuple(attempts)


def _draw_attempt(spec: SimJobSpec, agent: SimAgent, start_ms: int, run_id: str, rng: random.Random) -> Attempt:
    low_s, high_s = spec.scenario_duration_s
    duration_ms = _ms(rng.uniform(low_s, max(low_s, high_s)))
    draw = rng.random()
    if draw < spec.fail_rate:
        failure = _FAILURES[rng.randrange(len(_FAILURES))]
        return Attempt(run_id, start_ms, start_ms + duration_ms // 3, "failed", None, failure)
    if draw < spec.fail_rate + spec.timeout_rate:
        return Attempt(run_id, start_ms, start_ms + _ms(spec.scenario_timeout_s), "timeout", None, _TIMEOUT_FAILURE)
    if draw < spec.fail_rate + spec.timeout_rate + spec.cancel_rate:
        return Attempt(run_id, start_ms, start_ms + duration_ms // 2, "canceled", None, None)
    score = 1.0 if rng.random() < agent.pass_rate else rng.choice((0.0, 0.0, round(rng.random(), 2)))
    return Attempt(run_id, start_ms, start_ms + duration_ms, "scored", score, None)


def _chosen_attempt(spec: SimJobSpec, chosen: ChosenResult, start_ms: int, run_id: str, rng: random.Random) -> Attempt:
    """The one attempt of a scenario whose result the spec chose (tests know exactly what regressed)."""
    low_s, high_s = spec.scenario_duration_s
    duration_ms = _ms(rng.uniform(low_s, max(low_s, high_s)))
    if not isinstance(chosen, str):
        return Attempt(run_id, start_ms, start_ms + duration_ms, "scored", float(chosen), None)
    state, _, exception_type = chosen.partition(":")
    if state == "failed":
        failure = (exception_type, f"{exception_type} (chosen)") if exception_type else _FAILURES[0]
        return Attempt(run_id, start_ms, start_ms + duration_ms // 3, "failed", None, failure)
    if state == "setup":
        failure = (exception_type, f"{exception_type} (chosen)") if exception_type else _SETUP_FAILURE
        return Attempt(run_id, start_ms, start_ms + duration_ms // 10, "failed", None, failure, setup=True)
    if state == "timeout":
        failure = (exception_type, f"{exception_type} (chosen)") if exception_type else _TIMEOUT_FAILURE
        return Attempt(run_id, start_ms, start_ms + _ms(spec.scenario_timeout_s), "timeout", None, failure)
    return Attempt(run_id, start_ms, start_ms + duration_ms // 2, "canceled", None, None)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)

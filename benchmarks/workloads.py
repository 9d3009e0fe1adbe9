"""The workloads of issue 8, as batches of simulated jobs, and how many cycles of each kind to measure.

Running jobs start every scenario at once (concurrency = scenarios), so every scenario run is listed from the start,
and their durations are spread evenly over 1 to 90 min; job ages are spread over 5 to 88 min. Advancing the
clock 180 s between changed cycles then finishes about 3 % of the scenarios per cycle, and the oldest jobs' runs and
the jobs with them, while unchanged cycles keep the clock still (identical responses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ADVANCE_MS = 180_000
RUNNING_AGES_S = (300.0, 5300.0)
TERMINAL_AGES_S = (86_400.0, 172_800.0)  # one to two days old: within the watcher's discovery window (7 days)


@dataclass(frozen=True)
class Workload:
    """What to create in the simulator, and what to measure on it."""

    name: str
    title: str
    batches: tuple[dict[str, Any], ...]  # `POST /_sim/workload` bodies, in order
    unchanged_cycles: int
    changed_cycles: int
    naive_unchanged: int  # of those cycles, how many the naive poller is measured on too
    naive_changed: int
    service_samples: int  # clock moves in the timed phase with the real service
    advance_ms: int = ADVANCE_MS
    seed: int = 8


def running_batch(prefix: str, count: int, agents: int, scenarios: int) -> dict[str, Any]:
    """`count` running jobs of `agents` × `scenarios`, spread over their lives."""
    spec = {
        "agents": [{"name": f"agent-{i}", "model_name": f"model-{i}", "pass_rate": 0.7} for i in range(agents)],
        "n_scenarios": scenarios,
        "concurrency": max(1, scenarios),
        "scenario_duration_s": [60.0, 5400.0],
        "scenario_timeout_s": 5400.0,  # a timed-out scenario ends no later than the longest: runs do finish
        "fail_rate": 0.08,
        "timeout_rate": 0.02,
    }
    return {"count": count, "spec": spec, "name_prefix": prefix, "age_s": list(RUNNING_AGES_S)}


def terminal_batch(count: int, agents: int, scenarios: int) -> dict[str, Any]:
    """`count` jobs that completed a day or two ago."""
    spec = {
        "agents": [{"name": f"agent-{i}", "pass_rate": 0.7} for i in range(agents)],
        "n_scenarios": scenarios,
        "concurrency": 5,
        "scenario_duration_s": [60.0, 600.0],
    }
    return {"count": count, "spec": spec, "name_prefix": "done", "age_s": list(TERMINAL_AGES_S)}


def small(quick: bool) -> Workload:
    """10 running jobs × 2 agents × 50 scenarios."""
    if quick:
        return _tiny("small", (running_batch("small", 2, 2, 5),))
    title = "10 running jobs × 2 agents × 50 scenarios"
    return Workload("small", title, (running_batch("small", 10, 2, 50),), 5, 10, 5, 10, 8)


def large(quick: bool) -> Workload:
    """200 running jobs × 4 agents × 500 scenarios, scenario runs followed (400,000 records per cycle)."""
    if quick:
        return _tiny("large", (running_batch("large", 2, 2, 5),))
    title = "200 running jobs × 4 agents × 500 scenarios, scenario runs followed"
    return Workload("large", title, (running_batch("large", 200, 4, 500),), 3, 5, 1, 1, 3)


def many(quick: bool, *, terminal: bool = True) -> Workload:
    """10,000 jobs of which 9,800 terminal; without `terminal`, the same 200 running jobs alone (the control)."""
    name = "many" if terminal else "many-control"
    if quick:
        return _tiny(name, (running_batch("many", 2, 2, 5), *([terminal_batch(6, 1, 2)] if terminal else [])))
    batches = (running_batch("many", 200, 2, 50), *([terminal_batch(9800, 2, 10)] if terminal else []))
    title = "10,000 jobs: 200 running × 2 agents × 50 scenarios, 9,800 terminal (2 × 10)"
    if not terminal:
        title = "control: the same 200 running jobs without the terminal ones"
    return Workload(name, title, batches, 3, 5, 2, 3, 5)


def _tiny(name: str, batches: tuple[dict[str, Any], ...]) -> Workload:
    # Long clock moves: with only a few scenarios, a short one may change nothing.
    return Workload(name, f"quick: {name}, tiny", batches, 2, 2, 1, 1, 2, advance_ms=1_200_000)

"""Recordings: a simulated job's life as replay lines, straight from the simulator's views."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from watcher.core.clock import ManualClock
from watcher.core.models import BenchmarkJobView, ScenarioRunView
from watcher.core.scenario_runs import from_views
from watcher.core.snapshot import Snapshot
from watcher.simulator import JobPlan, Simulator
from watcher.simulator.views import job_view, scenario_run_views


def snapshot_line(plan: JobPlan, now_ms: int, *, with_scenario_runs: bool = True) -> dict[str, Any]:
    """One replay line: the job at `now_ms`, and the scenario runs of its in-progress runs."""
    view = job_view(plan, now_ms)
    line: dict[str, Any] = {"at_ms": now_ms, "job": view}
    if with_scenario_runs:
        runs = {run.run_id: run for run in plan.runs}
        line["scenario_runs"] = {
            entry["benchmark_run_id"]: scenario_run_views(plan, runs[entry["benchmark_run_id"]], now_ms)
            for entry in view["in_progress_runs"]
        }
    return line


def record(
    sim: Simulator,
    clock: ManualClock,
    plans: list[JobPlan],
    *,
    steps: int,
    step_ms: int,
    with_scenario_runs: bool = True,
) -> list[dict[str, Any]]:
    """Poll every plan `steps` times, `step_ms` apart, on the simulator's clock."""
    lines = []
    for _ in range(steps):
        lines.extend(snapshot_line(plan, clock.now_ms(), with_scenario_runs=with_scenario_runs) for plan in plans)
        clock.advance(step_ms)
    return lines


def to_snapshot(line: dict[str, Any]) -> Snapshot:
    """A replay line as the Snapshot the watcher would have built."""
    runs = {k: tuple(ScenarioRunView.model_validate(v) for v in vs) for k, vs in line.get("scenario_runs", {}).items()}
    job = BenchmarkJobView.model_validate(line["job"])
    return Snapshot(job=job, at_ms=line["at_ms"], scenario_runs=from_views(runs))


def write_lines(path: Path, lines: list[dict[str, Any]]) -> Path:
    """Write replay lines as JSON lines."""
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path

"""Nightly jobs of one benchmark with chosen per-scenario results, so a test knows exactly what regressed."""

from __future__ import annotations

from typing import Any

from watcher.core.clock import ManualClock
from watcher.simulator import SimAgent, SimJobSpec, Simulator
from watcher.simulator.plan import JobPlan

BENCHMARK = "bm_nightly"
SCENARIOS = [f"scn_{i:02d}" for i in range(12)]
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

# nightly-41: claude-code passes everything but scn_10 and scn_11; codex passes the first eight.
BASELINE_RESULTS: dict[str, Any] = {s: 1.0 for s in SCENARIOS} | {"scn_10": 0.0, "scn_11": "failed"}
# nightly-42: claude-code loses scn_00 (failed), scn_01 (score 0.5), scn_02 (timeout); scn_10 is fixed.
CURRENT_RESULTS: dict[str, Any] = BASELINE_RESULTS | {
    "scn_00": "failed",
    "scn_01": 0.5,
    "scn_02": "timeout",
    "scn_10": 1.0,
}
CODEX_RESULTS: dict[str, Any] = {s: (1.0 if i < 8 else 0.0) for i, s in enumerate(SCENARIOS)}


def nightly_spec(name: str, claude: dict[str, Any], codex: dict[str, Any] | None = None, **fields: Any) -> SimJobSpec:
    """A small nightly: two agents over SCENARIOS of BENCHMARK, with chosen results."""
    base: dict[str, Any] = {
        "name": name,
        "benchmark_id": BENCHMARK,
        "scenario_ids": SCENARIOS,
        "concurrency": 12,
        "scenario_duration_s": (60.0, 120.0),
        "agents": [
            SimAgent(name="claude-code", model_name="claude-sonnet-4-6", results=claude),
            SimAgent(name="codex", model_name="gpt-5", results=codex or CODEX_RESULTS),
        ],
    }
    return SimJobSpec(**(base | fields))


def add_nightly(
    sim: Simulator, clock: ManualClock, name: str, claude: dict[str, Any], *, days_ago: float, **fields: Any
) -> JobPlan:
    """Add a nightly created `days_ago` days before the clock's now (0: now, still to run)."""
    return sim.add_job(nightly_spec(name, claude, **fields), create_ms=clock.now_ms() - round(days_ago * DAY_MS))

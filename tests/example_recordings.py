"""The recordings beside the examples (examples/recordings/*.jsonl): simulated lives, recorded as replay lines.

Regenerate them with `python -m tests.example_recordings`; the simulator is seeded, so the files come out the same.
"""

from __future__ import annotations

from pathlib import Path

from tests.nightlies import BASELINE_RESULTS, CURRENT_RESULTS, add_nightly
from tests.recording import record, snapshot_line, write_lines
from watcher.core.clock import ManualClock
from watcher.simulator import SimAgent, SimJobSpec, Simulator

RECORDINGS = Path(__file__).parent.parent / "examples" / "recordings"
HOUR_MS = 3_600_000
FLAKY = [SimAgent(name="flaky-agent", model_name="small", pass_rate=0.5)]
STEADY = [SimAgent(name="steady-agent", model_name="big", pass_rate=0.9)]


def _lines(specs: list[SimJobSpec], *, seed: int, start_ms: int, steps: int, step_ms: int) -> list[dict[str, object]]:
    clock = ManualClock(start_ms)
    sim = Simulator(seed=seed, clock=clock)
    plans = [sim.add_job(spec) for spec in specs]
    return record(sim, clock, plans, steps=steps, step_ms=step_ms)


def job_failure() -> list[dict[str, object]]:
    """`nightly-a` fails 20 minutes in, its scenarios failing before; `nightly-b` is flaky but runs to the end."""
    return _lines(
        [
            SimJobSpec(name="nightly-a", agents=FLAKY, n_scenarios=12, concurrency=4, scenario_duration_s=(60, 240),
                       fail_rate=0.4, outcome="failed", end_after_s=600),
            SimJobSpec(name="nightly-b", agents=FLAKY, n_scenarios=8, concurrency=4, scenario_duration_s=(60, 240),
                       fail_rate=0.4),
        ],
        seed=7, start_ms=1_788_228_000_000, steps=30, step_ms=60_000,
    )  # fmt: skip


def overnight() -> list[dict[str, object]]:
    """Two flaky jobs, one started at 04:00 UTC (night in Berlin), one at 10:00 UTC on a Tuesday."""
    night = _lines(
        [SimJobSpec(name="nightly-c", agents=FLAKY, n_scenarios=6, concurrency=3, scenario_duration_s=(300, 900),
                    fail_rate=0.5)],
        seed=11, start_ms=1_788_235_200_000, steps=12, step_ms=300_000,
    )  # fmt: skip
    day = _lines(
        [SimJobSpec(name="daytime-d", agents=FLAKY, n_scenarios=6, concurrency=3, scenario_duration_s=(300, 900),
                    fail_rate=0.5)],
        seed=12, start_ms=1_788_256_800_000, steps=12, step_ms=300_000,
    )  # fmt: skip
    return night + day


def two_nightlies() -> list[dict[str, object]]:
    """Three jobs, two of them runs of the same nightly (same name, new job each night), all with failures."""
    lines: list[dict[str, object]] = []
    for night, name in enumerate(["nightly-e", "nightly-e", "weekly-f"]):
        lines += _lines(
            [SimJobSpec(name=name, agents=FLAKY + STEADY, n_scenarios=6, concurrency=6, scenario_duration_s=(60, 300),
                        fail_rate=0.4)],
            seed=20 + night, start_ms=1_788_228_000_000 + night * 24 * HOUR_MS, steps=8, step_ms=120_000,
        )  # fmt: skip
    return lines


def nightly_vs_baseline() -> list[dict[str, object]]:
    """`nightly-41` finished yesterday (one line, as a watcher started today first sees it), then `nightly-42` of
    the same benchmark runs and completes: claude-code loses three scenarios it passed the night before."""
    clock = ManualClock(1_788_228_000_000)
    sim = Simulator(seed=41, clock=clock)
    baseline = add_nightly(sim, clock, "nightly-41", BASELINE_RESULTS, days_ago=1)
    current = add_nightly(sim, clock, "nightly-42", CURRENT_RESULTS, days_ago=0)
    lines = [snapshot_line(baseline, clock.now_ms())]
    return lines + record(sim, clock, [current], steps=30, step_ms=60_000)


ALL = {
    "job-failure": job_failure,
    "overnight": overnight,
    "two-nightlies": two_nightlies,
    "nightly-vs-baseline": nightly_vs_baseline,
}


def main() -> None:
    """Write every recording."""
    RECORDINGS.mkdir(parents=True, exist_ok=True)
    for name, make in ALL.items():
        write_lines(RECORDINGS / f"{name}.jsonl", make())


if __name__ == "__main__":
    main()

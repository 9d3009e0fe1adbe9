"""A snapshot: what the watcher observed about one job at one moment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from watcher.core.models import BenchmarkJobView
from watcher.core.scenario_runs import RunScenarios


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The job view, the scenario runs of its in-progress runs when fetched, and when it was observed.

    `scenario_runs` maps a benchmark run id to its scenario runs (reduced to what the diff reads, and compared
    with the previous poll of that run); a run missing from the map was not fetched this time (which is not the
    same as a run with no scenario runs yet). `fingerprint`, when given,
    is a hash of the response bytes: a snapshot with the previous one's fingerprint is unchanged, no diff needed.
    """

    job: BenchmarkJobView
    at_ms: int
    scenario_runs: Mapping[str, RunScenarios] = field(default_factory=dict)
    fingerprint: str | None = None

"""Trends: per agent, the score and pass rate over the last comparable jobs, significant drops marked; a sparkline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from watcher.core.comparison import JobOutcomes
from watcher.diff.compare import pair_stats

DEFAULT_TREND_JOBS: Final = 10  # jobs a trend covers unless asked for more
_BARS: Final = "▁▂▃▄▅▆▇█"
DROP_MARK: Final = "↓"


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """One job of an agent's trend; `significant_drop`: significantly worse than the point before it."""

    job_id: str
    job_name: str
    create_time_ms: int
    score: float
    pass_rate: float
    significant_drop: bool

    def as_json(self) -> dict[str, Any]:
        """The point as a JSON object (for `compare --json --history`)."""
        return asdict(self)


def agent_trend(jobs: Sequence[JobOutcomes], key: tuple[str, str | None]) -> list[TrendPoint]:
    """The trend of agent `key` (name, model) over `jobs` (oldest first); jobs without that agent are skipped."""
    points: list[TrendPoint] = []
    previous = None
    for job in jobs:
        agent = job.agent(key)
        if agent is None:
            continue
        scenarios = {s.scenario_definition_id: s for s in agent.scenarios}
        results = list(scenarios.values())
        score = sum(s.score_or_zero for s in results) / len(results) if results else 0.0
        pass_rate = sum(s.passed for s in results) / len(results) if results else 0.0
        drop = False
        if previous is not None:
            paired = sorted(previous.keys() & scenarios.keys())
            stats = pair_stats([previous[i] for i in paired], [scenarios[i] for i in paired])
            drop = stats.significant and stats.score < stats.baseline_score
        points.append(
            TrendPoint(job.job_id, job.job_name, job.create_time_ms, round(score, 6), round(pass_rate, 6), drop)
        )
        previous = scenarios
    return points


def sparkline(values: Sequence[float], *, low: float = 0.0, high: float = 1.0) -> str:
    """One block character per value, scaled from `low` to `high` (scores and pass rates: 0 to 1)."""
    span = high - low or 1.0
    chars = []
    for value in values:
        share = min(1.0, max(0.0, (value - low) / span))
        chars.append(_BARS[min(len(_BARS) - 1, int(share * len(_BARS)))])
    return "".join(chars)


def drop_marks(points: Sequence[TrendPoint]) -> str:
    """A line to print under a sparkline: `↓` under each significant drop, spaces elsewhere."""
    return "".join(DROP_MARK if point.significant_drop else " " for point in points).rstrip()

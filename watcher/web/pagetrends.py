"""The status page's Trends: per benchmark (the most recently run first) and agent, score and pass rate over the
last comparable jobs kept in the store, significant drops marked — an inline SVG with the figures in words beside."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from markupsafe import Markup

from watcher.diff.trend import TrendPoint
from watcher.pipeline.archive import OutcomeArchive
from watcher.web.pagerows import BenchmarkTrends, TrendChart
from watcher.web.source import StatusSource
from watcher.web.trend_svg import trend_svg

BENCHMARKS_SHOWN: Final = 10  # the most recently run: each costs a read of its kept outcomes


async def build_trends(source: StatusSource) -> list[BenchmarkTrends]:
    """The trend charts of the benchmarks run most recently, each over the last `source.trend_jobs()` jobs."""
    archive = OutcomeArchive(source.store)
    window = source.trend_jobs()
    shown = []
    for benchmark in await archive.recent_benchmarks(BENCHMARKS_SHOWN):
        trends = await archive.trends(benchmark, limit=window)
        charts = tuple(_chart(_agent_label(name, model), points) for (name, model), points in trends.items())
        if charts:  # a benchmark kept only from failed or canceled jobs has no trend
            shown.append(BenchmarkTrends(benchmark, window, charts))
    return shown


def _agent_label(name: str, model: str | None) -> str:
    return f"{name} ({model})" if model else name


def _chart(agent: str, points: Sequence[TrendPoint]) -> TrendChart:
    summary = trend_summary(points)
    # trend_svg escapes every string it writes (title, job names): its text is markup already
    svg = Markup(trend_svg(points, title=f"{agent}: {summary}"))
    drops = tuple(point.job_name for point in points if point.significant_drop)
    return TrendChart(agent, svg, summary, drops)


def trend_summary(points: Sequence[TrendPoint]) -> str:
    """The chart in words: first and last score and pass rate, how many jobs, how many significant drops."""
    if not points:
        return "no comparable jobs yet"
    first, last = points[0], points[-1]
    drops = sum(point.significant_drop for point in points)
    jobs = f"{len(points)} job{'' if len(points) == 1 else 's'}"
    dropped = f"{drops} significant drop{'' if drops == 1 else 's'}" if drops else "no significant drop"
    return (
        f"score {first.score:.2f} → {last.score:.2f}, pass rate {first.pass_rate:.0%} → {last.pass_rate:.0%} "
        f"over the last {jobs}; {dropped}"
    )

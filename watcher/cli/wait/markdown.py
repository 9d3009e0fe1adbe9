"""`benchwatch wait --summary-markdown FILE` and `$GITHUB_STEP_SUMMARY`: how the wait ended, as markdown — the
verdict, the per-agent table, the failures by class, and the comparison with the baseline when there was one."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from watcher.cli.markdown import comparison_markdown, md_link, md_text
from watcher.cli.wait.defaults import EXIT_OK
from watcher.cli.wait.model import WaitResult
from watcher.cli.wait.views import wait_agents
from watcher.config.durations import format_duration_ms
from watcher.core.summary import JobSummary

MAX_FAILURE_TYPES: Final = 10


def wait_markdown(result: WaitResult) -> str:
    """The whole summary: a heading with the verdict, then what is known of the job."""
    name = md_text(result.job_name or result.job_id or "benchmark job")
    mark = "✅" if result.exit_code == EXIT_OK else "❌"
    state = f": {md_text(result.state)}" if result.state else ""
    lines = [f"### {mark} {name}{state}", "", f"**exit {result.exit_code}**: {md_text(result.reason)}"]
    if result.misses:
        lines += ["", *(f"- missed: {md_text(miss.message)}" for miss in result.misses)]
    if result.summary is not None:
        lines += ["", *_agents_table(result.summary, result), *_failures(result.summary)]
    if result.comparison is not None:
        lines += ["", comparison_markdown(result.job_name or "", result.comparison, heading="####").rstrip("\n")]
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, text: str, *, append: bool) -> None:
    """Write (or append, for `$GITHUB_STEP_SUMMARY`, which other steps write to as well) the markdown."""
    with path.open("a" if append else "w", encoding="utf-8") as out:
        if append and out.tell() > 0:
            out.write("\n")
        out.write(text)


def _agents_table(summary: JobSummary, result: WaitResult) -> list[str]:
    agents = wait_agents(summary, result.passed)
    if not agents:
        return []
    lines = [
        "| agent | model | avg score | pass rate | passed | failed | timed out | duration |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for agent in agents:
        score = "n/a" if agent.average_score is None else f"{agent.average_score:.3f}"
        rate = "—" if agent.pass_rate is None else f"{agent.pass_rate:.0%}"
        duration = "—" if agent.duration_ms is None else format_duration_ms(agent.duration_ms // 1000 * 1000)
        cells = [
            md_link(agent.agent_name or agent.benchmark_run_id, agent.url),
            md_text(agent.model_name or "—"),
            score,
            rate,
            str(agent.n_passed),
            str(agent.n_failed),
            str(agent.n_timeout),
            duration,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _failures(summary: JobSummary) -> list[str]:
    if not summary.failures_by_class.total:
        return []
    groups = ", ".join(
        f"{md_text(group.exception_type)} ×{group.count} ({group.failure_class})"
        for group in summary.failures[:MAX_FAILURE_TYPES]
    )
    extra = len(summary.failures) - MAX_FAILURE_TYPES
    more = f" and {extra} more types" if extra > 0 else ""
    detail = f" — {groups}{more}" if groups else ""
    return ["", f"Failures: {summary.failures_by_class.text()}{detail}"]

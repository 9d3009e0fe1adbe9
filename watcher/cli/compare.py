"""`benchwatch compare JOB [BASELINE_JOB]`: a finished job against its baseline, per agent, with the trend.

Exit 0 when it compared; 4 when a job is not found or has no baseline (docs/regressions.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Final

from watcher.api.client import RunloopClient
from watcher.app.config import load_config
from watcher.cli.errors import EXIT_API, EXIT_OK
from watcher.cli.state import given_state, state_location
from watcher.core.comparison import AgentComparison, JobOutcomes, ScenarioRef
from watcher.core.models import JobState
from watcher.diff.summary import dashboard_url_for
from watcher.diff.trend import TrendPoint, agent_trend, drop_marks, sparkline
from watcher.pipeline.archive import OutcomeArchive
from watcher.pipeline.baseline import BaselineFinder, BaselineNotFound, BaselineSection, Compared
from watcher.store import open_store

DEFAULT_TREND_JOBS: Final = 10


async def compare_command(args: argparse.Namespace) -> int:
    """`benchwatch compare`: print the comparison (a table per agent, or one JSON object)."""
    settings, state, base_url = _settings(args)
    async with open_store(state) as store, RunloopClient(base_url=base_url) as client:
        finder = BaselineFinder(
            OutcomeArchive(store), client, settings, dashboard_url=dashboard_url_for(client.base_url)
        )
        jobs_back = args.history if args.history is not None else DEFAULT_TREND_JOBS
        current = await _current(finder, args.job_id)
        # Earlier jobs first, from the list when the store lacks them: flakiness then sees the same history
        # whatever this store happened to hold.
        history = await finder.history(current, max(jobs_back - 1, settings.history), search_api=True)
        try:
            baseline = await finder.outcomes(args.baseline_job_id) if args.baseline_job_id is not None else None
            compared = await finder.compare(current, baseline)
        except BaselineNotFound as exc:
            print(f"benchwatch: {exc}", file=sys.stderr)
            return EXIT_API
        history = history[-(jobs_back - 1) :] if jobs_back > 1 else []
    trend_jobs = [*history, compared.current]
    if args.json:
        print(json.dumps(comparison_json(compared, trend_jobs if args.history is not None else None), indent=2))
    else:
        print(comparison_text(compared, trend_jobs))
    return EXIT_OK


async def _current(finder: BaselineFinder, job_id: str) -> JobOutcomes:
    current = await finder.outcomes(job_id)
    if current.state != JobState.COMPLETED:
        print(f"benchwatch: note: job {_clean(current.job_name)} is {current.state}, not completed", file=sys.stderr)
    return current


def _settings(args: argparse.Namespace) -> tuple[BaselineSection, str | Path, str | None]:
    """The `baseline:` settings, the state (path or url) and the API address, from --config / --state / --base-url;
    without either of the first two, the state is in memory."""
    if args.config is None:
        return BaselineSection(), given_state(args) or ":memory:", args.base_url
    loaded = load_config(args.config)
    config = loaded.config
    base_url = args.base_url or config.runloop.resolved_base_url(os.environ)
    return config.baseline or BaselineSection(), state_location(args, loaded), base_url


def comparison_json(compared: Compared, trend_jobs: list[JobOutcomes] | None) -> dict[str, Any]:
    """The `--json` object: job, baseline, and per agent the numbers and the scenario names (and the history)."""
    comparison = compared.comparison
    agents = []
    for agent in comparison.agents:
        row: dict[str, Any] = {
            "agent_name": agent.agent_name,
            "model_name": agent.model_name,
            "baseline_score": agent.baseline_score,
            "score": agent.score,
            "delta": agent.delta,
            "ci_low": agent.ci_low,
            "ci_high": agent.ci_high,
            "p_value": agent.p_value,
            "significant": agent.significant,
            "n_paired": agent.n_paired,
            "baseline_pass_rate": agent.baseline_pass_rate,
            "pass_rate": agent.pass_rate,
            "regressions": _names(agent.regressions),
            "fixes": _names(agent.fixes),
            "flaky": _names(agent.flaky),
            "still_failing": agent.n_still_failing,
            "new": _names(agent.new),
            "missing": _names(agent.missing),
        }
        if trend_jobs is not None:
            row["history"] = [p.as_json() for p in agent_trend(trend_jobs, (agent.agent_name, agent.model_name))]
        agents.append(row)
    return {
        "job_id": compared.current.job_id,
        "job_name": compared.current.job_name,
        "baseline_job_id": comparison.baseline_job_id,
        "baseline_job_name": comparison.baseline_job_name,
        "benchmark": comparison.benchmark,
        "significant": comparison.significant,
        "agents": agents,
        "unpaired_agents": list(comparison.unpaired_agents),
    }


def comparison_text(compared: Compared, trend_jobs: list[JobOutcomes]) -> str:
    """The terminal view: a heading, then a block per agent (numbers, trend, scenario lists with links)."""
    comparison = compared.comparison
    names = f"{_clean(compared.current.job_name)} vs {_clean(comparison.baseline_job_name)}"
    lines = [f"{names}  ({_clean(comparison.benchmark)})"]
    for agent in comparison.agents:
        lines.append("")
        lines.extend(_agent_block(agent, agent_trend(trend_jobs, (agent.agent_name, agent.model_name))))
    if comparison.unpaired_agents:
        lines += ["", "in only one of the two jobs: " + ", ".join(map(_clean, comparison.unpaired_agents))]
    if not comparison.agents:
        lines += ["", "no agent (name and model) ran in both jobs"]
    return "\n".join(lines)


def _agent_block(agent: AgentComparison, trend: list[TrendPoint]) -> list[str]:
    model = f" ({_clean(agent.model_name)})" if agent.model_name else ""
    verdict = "SIGNIFICANT" if agent.significant else "not significant"
    interval = f"95 % interval {_signed(agent.ci_low)} … {_signed(agent.ci_high)}"
    counts = f"{len(agent.regressions)} regressed, {len(agent.fixes)} fixed, {agent.n_still_failing} still failing"
    lines = [
        f"{_clean(agent.agent_name)}{model}",
        f"  score      {agent.baseline_score:.3f} → {agent.score:.3f}   {_signed(agent.delta)}   {interval}   "
        f"McNemar p = {agent.p_value:.3g}   {verdict}",
        f"  pass rate  {agent.baseline_pass_rate:.0%} → {agent.pass_rate:.0%}   over {agent.n_paired} paired "
        f"scenarios: {counts}",
    ]
    if len(trend) > 1:
        lines.append(f"  trend      {sparkline([p.score for p in trend])}  score over the last {len(trend)} jobs")
        marks = drop_marks(trend)
        if marks:
            lines.append(f"             {marks}  significant drop")
    for label, refs in (
        ("regressed", agent.regressions),
        ("fixed", agent.fixes),
        ("flaky, not counted", agent.flaky),
        ("new", agent.new),
        ("missing", agent.missing),
    ):
        if refs:
            lines.append(f"  {label} ({len(refs)})")
            lines.extend(f"    - {_ref(ref)}" for ref in refs)
    return lines


def _ref(ref: ScenarioRef) -> str:
    return f"{_clean(ref.scenario_name)}  {_clean(ref.url)}" if ref.url else _clean(ref.scenario_name)


def _names(refs: tuple[ScenarioRef, ...]) -> list[str]:
    return [ref.scenario_name for ref in refs]


def _signed(value: float) -> str:
    text = f"{value:+.3f}"
    return "−" + text[1:] if text.startswith("-") else text


def _clean(text: str) -> str:
    """API text on one terminal line: control characters (escape sequences, breaks) become spaces."""
    return "".join(ch if ch.isprintable() else " " for ch in text)

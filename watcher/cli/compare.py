"""`benchwatch compare JOB [BASELINE_JOB]`: a finished job against its baseline, per agent, with the trend.

Exit 0 when it compared; 4 when a job is not found, has no baseline, or shares no agent or scenario with it
(docs/regressions.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from watcher.api.client import RunloopClient
from watcher.app.config import load_config
from watcher.cli.errors import EXIT_API, EXIT_OK
from watcher.cli.markdown import comparison_markdown
from watcher.cli.state import given_state, state_location
from watcher.core.comparison import AgentComparison, JobOutcomes, RegressionRef, ScenarioRef
from watcher.core.failureclass import DEFAULT_FAILURE_CLASSES, FailureClasses
from watcher.core.models import JobState
from watcher.core.printable import printable
from watcher.diff.compare import NotComparable, scenario_results
from watcher.diff.summary import dashboard_url_for
from watcher.diff.trend import DEFAULT_TREND_JOBS, TrendPoint, agent_trend, drop_marks, sparkline
from watcher.pipeline.archive import OutcomeArchive
from watcher.pipeline.baseline import BaselineFinder, BaselineNotFound, BaselineSection, Compared
from watcher.store import open_store


async def compare_command(args: argparse.Namespace) -> int:
    """`benchwatch compare`: print the comparison (a table per agent, one JSON object, or markdown)."""
    settings, classes, state, base_url = _settings(args)
    async with open_store(state) as store, RunloopClient(base_url=base_url) as client:
        finder = BaselineFinder(
            OutcomeArchive(store), client, settings, dashboard_url=dashboard_url_for(client.base_url), classes=classes
        )
        jobs_back = args.history if args.history is not None else DEFAULT_TREND_JOBS
        current = await _current(finder, args.job_id)
        # Earlier jobs first, from the list when the store lacks them: flakiness then sees the same history
        # whatever this store happened to hold.
        history = await finder.history(current, max(jobs_back - 1, settings.history), search_api=True)
        try:
            baseline = await finder.outcomes(args.baseline_job_id) if args.baseline_job_id is not None else None
            compared = await finder.compare(current, baseline)
        except (BaselineNotFound, NotComparable) as exc:
            print(f"benchwatch: {_clean(str(exc))}", file=sys.stderr)
            return EXIT_API
        history = history[-(jobs_back - 1) :] if jobs_back > 1 else []
    trend_jobs = [*history, compared.current]
    output_format = "json" if args.json else args.format
    if output_format == "json":
        print(json.dumps(comparison_json(compared, trend_jobs if args.history is not None else None), indent=2))
    elif output_format == "markdown":
        sys.stdout.write(comparison_markdown(compared.current.job_name, compared.comparison))
    else:
        print(comparison_text(compared, trend_jobs))
    return EXIT_OK


async def _current(finder: BaselineFinder, job_id: str) -> JobOutcomes:
    current = await finder.outcomes(job_id)
    if current.state != JobState.COMPLETED:
        print(f"benchwatch: note: job {_clean(current.job_name)} is {current.state}, not completed", file=sys.stderr)
    return current


def _settings(args: argparse.Namespace) -> tuple[BaselineSection, FailureClasses, str | Path, str | None]:
    """The `baseline:` settings (with the command line's over them), the failure classes, the state (path or url)
    and the API address, from --config / --state / --base-url; without either of the first two, the state is in
    memory."""
    if args.config is None:
        settings, classes = BaselineSection(), DEFAULT_FAILURE_CLASSES
        state: str | Path = given_state(args) or ":memory:"
        base_url = args.base_url
    else:
        loaded = load_config(args.config)
        config = loaded.config
        settings, classes = config.baseline or BaselineSection(), config.failure_classes.table()
        state = state_location(args, loaded)
        base_url = args.base_url or config.runloop.resolved_base_url(os.environ)
    update: dict[str, object] = {}
    if args.count_setup_failures:
        update["count_setup_failures"] = True
    if args.min_effect is not None:
        update["min_effect"] = args.min_effect
    return settings.model_copy(update=update), classes, state, base_url


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
            "p_adjusted": agent.p_adjusted,
            "significant": agent.significant,
            "power": agent.power,
            "power_warning": agent.power_warning,
            "n_paired": agent.n_paired,
            "baseline_pass_rate": agent.baseline_pass_rate,
            "pass_rate": agent.pass_rate,
            "regressions": _names(agent.regressions),
            "new_regressions": _names(tuple(r for r in agent.regressions if r.new)),
            "fixes": _names(agent.fixes),
            "flaky": _names(agent.flaky),
            "infra": _names(agent.infra),
            "still_failing": agent.n_still_failing,
            "new": _names(agent.new),
            "missing": _names(agent.missing),
            "scenarios": scenario_rows(compared, agent),
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
        "min_effect": compared.rules.min_effect,
        "history_jobs": [job.job_name for job in compared.recent],
        "agents": agents,
        "unpaired_agents": list(comparison.unpaired_agents),
    }


def scenario_rows(compared: Compared, agent: AgentComparison) -> list[dict[str, Any]]:
    """Every scenario of the agent in either job: its result in the baseline and now, in each recent job (oldest
    first: `history_jobs`), and what the comparison made of it."""
    key = (agent.agent_name, agent.model_name)
    recent = scenario_results(compared.recent, key, compared.rules)
    now = scenario_results([compared.current], key, compared.rules)
    before = scenario_results([compared.baseline], key, compared.rules)
    verdicts = _verdicts(agent)
    names = _scenario_names(compared, key)
    return [
        {
            "scenario_definition_id": sid,
            "scenario_name": names.get(sid, sid),
            "baseline": before.get(sid, (None,))[0],
            "now": now.get(sid, (None,))[0],
            "recent": list(recent.get(sid, (None,) * len(compared.recent))),
            "verdict": verdicts.get(sid, "unchanged"),
            "new_regression": sid in {r.scenario_definition_id for r in agent.regressions if r.new},
        }
        for sid in sorted(now.keys() | before.keys())
    ]


def _verdicts(agent: AgentComparison) -> dict[str, str]:
    verdicts: dict[str, str] = {}
    for verdict, refs in (
        ("regression", agent.regressions),
        ("fix", agent.fixes),
        ("flaky", agent.flaky),
        ("infra", agent.infra),
        ("added", agent.new),
        ("missing", agent.missing),
    ):
        verdicts.update(dict.fromkeys((ref.scenario_definition_id for ref in refs), verdict))
    return verdicts


def _scenario_names(compared: Compared, key: tuple[str, str | None]) -> dict[str, str]:
    names: dict[str, str] = {}
    for job in (*compared.recent, compared.baseline, compared.current):
        agent = job.agent(key)
        for scenario in agent.scenarios if agent is not None else ():
            names[scenario.scenario_definition_id] = scenario.scenario_name or scenario.scenario_definition_id
    return names


def comparison_text(compared: Compared, trend_jobs: list[JobOutcomes]) -> str:
    """The terminal view: a heading, then a block per agent (numbers, trend, scenario lists with links)."""
    comparison = compared.comparison
    names = f"{_clean(compared.current.job_name)} vs {_clean(comparison.baseline_job_name)}"
    lines = [f"{names}  ({_clean(comparison.benchmark)})"]
    for agent in comparison.agents:
        lines.append("")
        lines.extend(_agent_block(agent, agent_trend(trend_jobs, (agent.agent_name, agent.model_name))))
    if comparison.unpaired_agents:
        lines += ["", "not compared: " + ", ".join(map(_clean, comparison.unpaired_agents))]
    return "\n".join(lines)


def _agent_block(agent: AgentComparison, trend: list[TrendPoint]) -> list[str]:
    model = f" ({_clean(agent.model_name)})" if agent.model_name else ""
    verdict = "SIGNIFICANT" if agent.significant else "not significant"
    interval = f"95 % interval {_signed(agent.ci_low)} … {_signed(agent.ci_high)}"
    counts = f"{len(agent.regressions)} regressed, {len(agent.fixes)} fixed, {agent.n_still_failing} still failing"
    adjusted = (
        f" (Holm-adjusted {agent.p_adjusted:.3g})"
        if agent.p_adjusted is not None and agent.p_adjusted != agent.p_value
        else ""
    )
    lines = [
        f"{_clean(agent.agent_name)}{model}",
        f"  score      {agent.baseline_score:.3f} → {agent.score:.3f}   {_signed(agent.delta)}   {interval}   "
        f"McNemar p = {agent.p_value:.3g}{adjusted}   {verdict}",
        f"  pass rate  {agent.baseline_pass_rate:.0%} → {agent.pass_rate:.0%}   over {agent.n_paired} paired "
        f"scenarios: {counts}",
    ]
    if agent.power_warning:
        lines.append(f"  power      {_clean(agent.power_warning)}")
    if len(trend) > 1:
        lines.append(f"  trend      {sparkline([p.score for p in trend])}  score over the last {len(trend)} jobs")
        marks = drop_marks(trend)
        if marks:
            lines.append(f"             {marks}  significant drop")
    for label, refs in (
        ("regressed", agent.regressions),
        ("fixed", agent.fixes),
        ("flaky, not counted", agent.flaky),
        ("failed in setup, not counted", agent.infra),
        ("new", agent.new),
        ("missing", agent.missing),
    ):
        if refs:
            lines.append(f"  {label} ({len(refs)})")
            lines.extend(f"    - {_ref(ref)}" for ref in refs)
    return lines


def _ref(ref: ScenarioRef) -> str:
    text = f"{_clean(ref.scenario_name)}  {_clean(ref.url)}" if ref.url else _clean(ref.scenario_name)
    if isinstance(ref, RegressionRef) and ref.new:
        text += "  (new: passed in every recent job)"
    return text


def _names(refs: tuple[ScenarioRef, ...]) -> list[str]:
    return [ref.scenario_name for ref in refs]


def _signed(value: float) -> str:
    text = f"{value:+.3f}"
    return "−" + text[1:] if text.startswith("-") else text


def _clean(text: str) -> str:
    """API text on one terminal line: control characters (escape sequences, breaks) become spaces."""
    return printable(text)

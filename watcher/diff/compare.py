"""A finished job compared with its baseline, per paired agent and per scenario — a pure, deterministic function.

Agents pair by (agent name, model). Scenarios pair by scenario definition id. A scenario passes as rl-cli says:
COMPLETED with score 1.0; a scenario that did not complete scores 0 in the averages. The statistics (a paired
bootstrap interval of the mean score change, an exact McNemar test of the pass/fail flips) use every paired
scenario; flakiness decides only what is *listed* as a regression or a fix. See docs/regressions.md.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from watcher.core.comparison import (
    AgentComparison,
    AgentOutcomes,
    ComparisonFields,
    JobOutcomes,
    ScenarioRef,
    ScenarioResult,
)
from watcher.diff.stats import mcnemar_exact, paired_bootstrap

SIGNIFICANCE_LEVEL: Final = 0.05
DEFAULT_FLAKY_WINDOW: Final = 10
DEFAULT_FLAKY_MIN_FLIPS: Final = 3
_DIGITS: Final = 6


class NotComparable(ValueError):
    """Two jobs with no agent (name and model) in common, or whose common agents share no scenario: a comparison
    over 0 paired scenarios would say nothing, so none is made."""


@dataclass(frozen=True, slots=True)
class FlakyRule:
    """A scenario is flaky when its pass/fail flipped at least `min_flips` times over the last `window` jobs."""

    window: int = DEFAULT_FLAKY_WINDOW
    min_flips: int = DEFAULT_FLAKY_MIN_FLIPS


@dataclass(frozen=True, slots=True)
class PairStats:
    """The numbers of one paired comparison (what `AgentComparison` and a trend point both need)."""

    baseline_score: float
    score: float
    ci_low: float
    ci_high: float
    p_value: float
    significant: bool


def compare_jobs(
    current: JobOutcomes,
    baseline: JobOutcomes,
    history: Sequence[JobOutcomes] = (),
    *,
    flaky: FlakyRule = FlakyRule(),
    dashboard_url: str = "",
) -> ComparisonFields:
    """Compare `current` with `baseline`; `history` holds earlier comparable jobs (any order) for flakiness.

    An agent of both jobs that shares no scenario with its counterpart is listed as unpaired; NotComparable when no
    agent is left to compare (no result is ever made over 0 paired scenarios)."""
    jobs = sorted({j.job_id: j for j in (*history, baseline, current)}.values(), key=_order)
    agents = []
    unpaired = []
    for agent in current.agents:
        before = baseline.agent(agent.key)
        if before is None:
            unpaired.append(_agent_label(agent))
        elif not _scenario_ids(before) & _scenario_ids(agent):
            unpaired.append(f"{_agent_label(agent)} (no scenario in common)")
        else:
            flaky_ids = flaky_scenarios(jobs, agent.key, flaky)
            agents.append(compare_agent(before, agent, flaky_ids, dashboard_url))
    unpaired.extend(_agent_label(a) for a in baseline.agents if current.agent(a.key) is None)
    if not agents:
        raise NotComparable(_why_not(current, baseline))
    return ComparisonFields(
        baseline_job_id=baseline.job_id,
        baseline_job_name=baseline.job_name,
        benchmark=current.benchmark,
        significant=any(a.significant for a in agents),
        n_regressions=sum(len(a.regressions) for a in agents),
        n_fixes=sum(len(a.fixes) for a in agents),
        agents=tuple(agents),
        unpaired_agents=tuple(unpaired),
    )


def compare_agent(
    baseline: AgentOutcomes, current: AgentOutcomes, flaky_ids: frozenset[str], dashboard_url: str = ""
) -> AgentComparison:
    """One paired agent: scores, interval, test, and the scenarios that regressed, were fixed, are new or gone."""
    before = {s.scenario_definition_id: s for s in baseline.scenarios}
    now = {s.scenario_definition_id: s for s in current.scenarios}
    paired = sorted(before.keys() & now.keys())
    stats = pair_stats([before[i] for i in paired], [now[i] for i in paired])

    def refs(ids: Sequence[str], side: dict[str, ScenarioResult]) -> tuple[ScenarioRef, ...]:
        return tuple(_ref(side[i], dashboard_url) for i in ids)

    steady = [i for i in paired if i not in flaky_ids]
    return AgentComparison(
        agent_name=current.agent_name,
        model_name=current.model_name,
        baseline_score=stats.baseline_score,
        score=stats.score,
        delta=round(stats.score - stats.baseline_score, _DIGITS),
        ci_low=stats.ci_low,
        ci_high=stats.ci_high,
        p_value=stats.p_value,
        significant=stats.significant,
        n_paired=len(paired),
        baseline_pass_rate=_rate(before[i] for i in paired),
        pass_rate=_rate(now[i] for i in paired),
        regressions=refs([i for i in steady if before[i].passed and not now[i].passed], now),
        fixes=refs([i for i in steady if not before[i].passed and now[i].passed], now),
        n_still_failing=sum(1 for i in steady if not before[i].passed and not now[i].passed),
        flaky=refs([i for i in paired if i in flaky_ids], now),
        new=refs(sorted(now.keys() - before.keys()), now),
        missing=refs(sorted(before.keys() - now.keys()), before),
    )


def pair_stats(baseline: Sequence[ScenarioResult], current: Sequence[ScenarioResult]) -> PairStats:
    """Mean scores, the bootstrap interval of their difference, the McNemar p-value, and whether it is significant.

    Significant: the 95 % interval excludes zero and, when any scenario flipped between pass and fail, the McNemar
    p-value is below 0.05 as well — both tests must agree, which keeps small benchmarks from crying wolf.
    """
    before = [s.score_or_zero for s in baseline]
    now = [s.score_or_zero for s in current]
    down = sum(1 for b, c in zip(baseline, current, strict=True) if b.passed and not c.passed)
    up = sum(1 for b, c in zip(baseline, current, strict=True) if not b.passed and c.passed)
    low, high = paired_bootstrap(before, now)
    p_value = mcnemar_exact(down, up)
    excludes_zero = low > 0 or high < 0
    significant = excludes_zero and (down + up == 0 or p_value < SIGNIFICANCE_LEVEL)
    return PairStats(
        baseline_score=_mean(before),
        score=_mean(now),
        ci_low=round(low, _DIGITS),
        ci_high=round(high, _DIGITS),
        p_value=round(p_value, 12),
        significant=significant,
    )


def flaky_scenarios(jobs: Sequence[JobOutcomes], key: tuple[str, str | None], rule: FlakyRule) -> frozenset[str]:
    """Scenarios of agent `key` whose pass/fail flipped at least `rule.min_flips` times over its last
    `rule.window` jobs (`jobs` oldest first; a job without the agent does not count)."""
    runs = [agent for job in jobs if (agent := job.agent(key)) is not None][-rule.window :]
    last: dict[str, bool] = {}
    flips: dict[str, int] = {}
    for run in runs:
        for scenario in run.scenarios:
            passed = scenario.passed
            previous = last.get(scenario.scenario_definition_id)
            if previous is not None and previous != passed:
                flips[scenario.scenario_definition_id] = flips.get(scenario.scenario_definition_id, 0) + 1
            last[scenario.scenario_definition_id] = passed
    return frozenset(i for i, count in flips.items() if count >= rule.min_flips)


def scenario_url(dashboard_url: str, scenario: ScenarioResult) -> str | None:
    """The dashboard page of a scenario's run, when it has one."""
    if not dashboard_url or not scenario.scenario_run_id:
        return None
    definition = urllib.parse.quote(scenario.scenario_definition_id, safe="")
    run = urllib.parse.quote(scenario.scenario_run_id, safe="")
    return f"{dashboard_url}/scenarios/{definition}/runs/{run}"


def _ref(scenario: ScenarioResult, dashboard_url: str) -> ScenarioRef:
    return ScenarioRef(
        scenario_definition_id=scenario.scenario_definition_id,
        scenario_name=scenario.scenario_name or scenario.scenario_definition_id,
        url=scenario_url(dashboard_url, scenario),
    )


def _why_not(current: JobOutcomes, baseline: JobOutcomes) -> str:
    """One line: why the two jobs cannot be compared."""
    names = f"cannot compare {current.job_name} with {baseline.job_name}"
    if not any(baseline.agent(agent.key) is not None for agent in current.agents):
        ran = ", ".join(map(_agent_label, current.agents)) or "none"
        ran_before = ", ".join(map(_agent_label, baseline.agents)) or "none"
        return f"{names}: no agent (name and model) ran in both ({ran} vs {ran_before})"
    now = {i for agent in current.agents for i in _scenario_ids(agent)}
    before = {i for agent in baseline.agents for i in _scenario_ids(agent)}
    return f"{names}: they share no scenario ({len(now)} vs {len(before)} scenarios, none in common)"


def _scenario_ids(agent: AgentOutcomes) -> set[str]:
    return {s.scenario_definition_id for s in agent.scenarios}


def _agent_label(agent: AgentOutcomes) -> str:
    return f"{agent.agent_name}/{agent.model_name}" if agent.model_name else agent.agent_name


def _order(job: JobOutcomes) -> tuple[int, str]:
    return (job.create_time_ms, job.job_id)


def _mean(values: Sequence[float]) -> float:
    return round(math.fsum(values) / len(values), _DIGITS) if values else 0.0


def _rate(scenarios: Iterable[ScenarioResult]) -> float:
    flags = [s.passed for s in scenarios]
    return round(sum(flags) / len(flags), _DIGITS) if flags else 0.0

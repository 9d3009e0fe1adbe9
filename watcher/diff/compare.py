"""A finished job compared with its baseline, per paired agent and per scenario — a pure, deterministic function.

Agents pair by (agent name, model). Scenarios pair by scenario definition id. A scenario passes as rl-cli says:
COMPLETED with score 1.0; a scenario that did not complete scores 0 in the averages. A scenario that failed in
setup (its failure class, `watcher.core.failureclass`) in either job is not the agent's outcome: it is listed apart
(`infra`) and left out of everything else, unless asked to count. The statistics (a paired bootstrap interval of the
mean score change, an exact McNemar test of the pass/fail flips, Holm–Bonferroni-adjusted across agents, and the
test's power against a `min_effect` drop) use every paired agent outcome; the recent history decides only what is
*listed* as a regression or a fix (flaky) and which regressions are `new`. See docs/regressions.md.
"""

from __future__ import annotations

import itertools
import math
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from watcher.core.comparison import (
    AgentComparison,
    AgentOutcomes,
    ComparisonFields,
    JobOutcomes,
    RegressionRef,
    ScenarioRef,
    ScenarioResult,
)
from watcher.core.failureclass import DEFAULT_FAILURE_CLASSES, FailureClasses
from watcher.diff.stats import holm_adjusted, mcnemar_exact, mcnemar_power, mcnemar_sample_size, paired_bootstrap

SIGNIFICANCE_LEVEL: Final = 0.05
TARGET_POWER: Final = 0.8
DEFAULT_FLAKY_WINDOW: Final = 5
DEFAULT_FLAKY_MIN_FLIPS: Final = 1
DEFAULT_MIN_EFFECT: Final = 0.05
_DIGITS: Final = 6

Result = Literal["pass", "fail", "setup"]


class NotComparable(ValueError):
    """Two jobs with no agent (name and model) in common, or whose common agents share no scenario: a comparison
    over 0 paired scenarios would say nothing, so none is made."""


@dataclass(frozen=True, slots=True)
class FlakyRule:
    """A scenario is flaky when its pass/fail flipped at least `min_flips` times over the last `window` comparable
    jobs before the one compared (the baseline among them); the flip being judged now does not count."""

    window: int = DEFAULT_FLAKY_WINDOW
    min_flips: int = DEFAULT_FLAKY_MIN_FLIPS


@dataclass(frozen=True, slots=True)
class CompareRules:
    """How a comparison counts: flakiness, failure classes, whether setup failures count, the drop worth seeing."""

    flaky: FlakyRule = FlakyRule()
    classes: FailureClasses = DEFAULT_FAILURE_CLASSES
    count_setup_failures: bool = False
    min_effect: float = DEFAULT_MIN_EFFECT


@dataclass(frozen=True, slots=True)
class PairStats:
    """The numbers of one paired comparison (what `AgentComparison` and a trend point both need)."""

    baseline_score: float
    score: float
    ci_low: float
    ci_high: float
    p_value: float
    significant: bool
    n_flips: int = 0


def compare_jobs(
    current: JobOutcomes,
    baseline: JobOutcomes,
    history: Sequence[JobOutcomes] = (),
    *,
    rules: CompareRules = CompareRules(),
    dashboard_url: str = "",
) -> ComparisonFields:
    """Compare `current` with `baseline`; `history` holds earlier comparable jobs (any order) for flakiness.

    An agent of both jobs that shares no scenario with its counterpart is listed as unpaired; NotComparable when no
    agent is left to compare (no result is ever made over 0 paired scenarios)."""
    recent = recent_jobs(current, baseline, history, rules.flaky.window)
    drafts = []
    unpaired = []
    for agent in current.agents:
        before = baseline.agent(agent.key)
        if before is None:
            unpaired.append(_agent_label(agent))
        elif not _scenario_ids(before) & _scenario_ids(agent):
            unpaired.append(f"{_agent_label(agent)} (no scenario in common)")
        else:
            drafts.append(_compare_agent(before, agent, recent, rules, dashboard_url))
    unpaired.extend(_agent_label(a) for a in baseline.agents if current.agent(a.key) is None)
    if not drafts:
        raise NotComparable(_why_not(current, baseline))
    agents = _adjusted(drafts, rules.min_effect)
    return ComparisonFields(
        baseline_job_id=baseline.job_id,
        baseline_job_name=baseline.job_name,
        benchmark=current.benchmark,
        significant=any(a.significant for a in agents),
        n_regressions=sum(len(a.regressions) for a in agents),
        n_fixes=sum(len(a.fixes) for a in agents),
        n_infra=sum(len(a.infra) for a in agents),
        agents=tuple(agents),
        unpaired_agents=tuple(unpaired),
    )


def recent_jobs(
    current: JobOutcomes, baseline: JobOutcomes, history: Sequence[JobOutcomes], window: int
) -> list[JobOutcomes]:
    """The last `window` comparable jobs before `current`, oldest first: the history and the baseline."""
    earlier = {j.job_id: j for j in history if _order(j) < _order(current)} | {baseline.job_id: baseline}
    earlier.pop(current.job_id, None)
    return sorted(earlier.values(), key=_order)[-window:] if window > 0 else []


def compare_agent(
    baseline: AgentOutcomes,
    current: AgentOutcomes,
    recent: Sequence[JobOutcomes],
    rules: CompareRules = CompareRules(),
    dashboard_url: str = "",
) -> AgentComparison:
    """One paired agent: scores, interval, test, power, and the scenarios that regressed, were fixed, are flaky,
    failed in setup, are new or gone. `p_adjusted` is its own p-value: `compare_jobs` adjusts across agents."""
    return _compare_agent(baseline, current, recent, rules, dashboard_url)[0]


def _compare_agent(
    baseline: AgentOutcomes,
    current: AgentOutcomes,
    recent: Sequence[JobOutcomes],
    rules: CompareRules,
    dashboard_url: str,
) -> tuple[AgentComparison, int]:
    """`compare_agent`, and how many paired scenarios flipped between pass and fail (for the adjustment)."""
    before = {s.scenario_definition_id: s for s in baseline.scenarios}
    now = {s.scenario_definition_id: s for s in current.scenarios}
    both = sorted(before.keys() & now.keys())
    setup = (
        set() if rules.count_setup_failures else {i for i in both if _setup(before[i], rules) or _setup(now[i], rules)}
    )
    paired = [i for i in both if i not in setup]
    stats = pair_stats([before[i] for i in paired], [now[i] for i in paired])
    results = scenario_results(recent, current.key, rules)
    flaky_ids = {i for i in paired if _flips(results.get(i, ())) >= rules.flaky.min_flips}
    steady = [i for i in paired if i not in flaky_ids]

    def refs(ids: Iterable[str], side: Mapping[str, ScenarioResult]) -> tuple[ScenarioRef, ...]:
        return tuple(_ref(side[i], dashboard_url) for i in ids)

    regressed = [i for i in steady if before[i].passed and not now[i].passed]
    power = mcnemar_power(len(paired), rules.min_effect, _discordance(stats.n_flips, len(paired)))
    comparison = AgentComparison(
        agent_name=current.agent_name,
        model_name=current.model_name,
        baseline_score=stats.baseline_score,
        score=stats.score,
        delta=round(stats.score - stats.baseline_score, _DIGITS),
        ci_low=stats.ci_low,
        ci_high=stats.ci_high,
        p_value=stats.p_value,
        p_adjusted=stats.p_value,
        significant=stats.significant,
        power=round(power, 4),
        power_warning=None if stats.significant else power_warning(len(paired), stats.n_flips, rules.min_effect, power),
        n_paired=len(paired),
        baseline_pass_rate=_rate(before[i] for i in paired),
        pass_rate=_rate(now[i] for i in paired),
        regressions=tuple(
            RegressionRef(**dict(_ref(now[i], dashboard_url)), new=_always_passed(results.get(i, ())))
            for i in regressed
        ),
        fixes=refs([i for i in steady if not before[i].passed and now[i].passed], now),
        n_still_failing=sum(1 for i in steady if not before[i].passed and not now[i].passed),
        flaky=refs(sorted(flaky_ids), now),
        infra=tuple(_ref(now[i] if _setup(now[i], rules) else before[i], dashboard_url) for i in sorted(setup)),
        new=refs(sorted(now.keys() - before.keys()), now),
        missing=refs(sorted(before.keys() - now.keys()), before),
    )
    return comparison, stats.n_flips


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
    return PairStats(
        baseline_score=_mean(before),
        score=_mean(now),
        ci_low=round(low, _DIGITS),
        ci_high=round(high, _DIGITS),
        p_value=round(p_value, 12),
        significant=_significant(low, high, down + up, p_value),
        n_flips=down + up,
    )


def scenario_results(
    jobs: Sequence[JobOutcomes], key: tuple[str, str | None], rules: CompareRules = CompareRules()
) -> dict[str, tuple[Result | None, ...]]:
    """Per scenario of agent `key`, its result in each of `jobs` (oldest first): pass, fail, setup (a failure in
    setup, when those do not count), or None where the job did not run it (or ran without the agent)."""
    runs = [{s.scenario_definition_id: s for s in agent.scenarios} if (agent := job.agent(key)) else {} for job in jobs]
    ids = sorted({i for run in runs for i in run})
    return {i: tuple(_result(run[i], rules) if i in run else None for run in runs) for i in ids}


def flaky_scenarios(
    jobs: Sequence[JobOutcomes], key: tuple[str, str | None], rules: CompareRules = CompareRules()
) -> frozenset[str]:
    """Scenarios of agent `key` whose pass/fail flipped at least `rules.flaky.min_flips` times over `jobs` (oldest
    first; the caller picks the window); setup failures and jobs that did not run a scenario are skipped."""
    results = scenario_results(jobs, key, rules)
    return frozenset(i for i, seen in results.items() if _flips(seen) >= rules.flaky.min_flips)


def power_warning(
    n_paired: int, n_flips: int, min_effect: float, power: float, alpha: float = SIGNIFICANCE_LEVEL
) -> str | None:
    """`too few scenarios to detect a 5-point drop: …`, when the power is below 80 %; else None. (A comparison
    asks only when its change is not significant: "no significant drop" is what the warning qualifies.)"""
    if power >= TARGET_POWER:
        return None
    points = f"{min_effect * 100:g}"
    needed = mcnemar_sample_size(min_effect, _discordance(n_flips, n_paired), alpha, TARGET_POWER)
    return (
        f"too few scenarios to detect a {points}-point drop: {n_paired} paired, about {needed} needed for 80% power "
        f"(now {power:.0%})"
    )


def scenario_url(dashboard_url: str, scenario: ScenarioResult) -> str | None:
    """The dashboard page of a scenario's run, when it has one."""
    if not dashboard_url or not scenario.scenario_run_id:
        return None
    definition = urllib.parse.quote(scenario.scenario_definition_id, safe="")
    run = urllib.parse.quote(scenario.scenario_run_id, safe="")
    return f"{dashboard_url}/scenarios/{definition}/runs/{run}"


def _adjusted(drafts: Sequence[tuple[AgentComparison, int]], min_effect: float) -> list[AgentComparison]:
    """Holm–Bonferroni across agents: each agent's `p_adjusted`, and `significant` judged on it. The power is then
    that of the test at the strictest level Holm uses (α divided by the number of agents)."""
    if len(drafts) < 2:
        return [agent for agent, _ in drafts]
    adjusted = holm_adjusted([agent.p_value for agent, _ in drafts])
    alpha = SIGNIFICANCE_LEVEL / len(drafts)
    result = []
    for (agent, flips), p_adjusted in zip(drafts, adjusted, strict=True):
        discordance = _discordance(flips, agent.n_paired)
        power = mcnemar_power(agent.n_paired, min_effect, discordance, alpha)
        significant = _significant(agent.ci_low, agent.ci_high, flips, p_adjusted)
        warning = None if significant else power_warning(agent.n_paired, flips, min_effect, power, alpha)
        if warning is not None:
            warning += f", at α = 0.05 / {len(drafts)} agents"
        result.append(
            agent.model_copy(
                update={
                    "p_adjusted": round(p_adjusted, 12),
                    "significant": significant,
                    "power": round(power, 4),
                    "power_warning": warning,
                }
            )
        )
    return result


def _significant(low: float, high: float, flips: int, p_value: float) -> bool:
    return (low > 0 or high < 0) and (flips == 0 or p_value < SIGNIFICANCE_LEVEL)


def _discordance(n_flips: int, n_paired: int) -> float:
    """The share of pairs that flipped: the assumed ψ of the power computation (at least the drop itself)."""
    return n_flips / n_paired if n_paired else 0.0


def _setup(scenario: ScenarioResult, rules: CompareRules) -> bool:
    kind = rules.classes.classify(scenario.state, scenario.scenario_run_id, scenario.exception_type)
    return kind == "setup"


def _result(scenario: ScenarioResult, rules: CompareRules) -> Result:
    if not rules.count_setup_failures and _setup(scenario, rules):
        return "setup"
    return "pass" if scenario.passed else "fail"


def _flips(results: Iterable[Result | None]) -> int:
    """How often pass/fail changed between consecutive runs of the agent (setup failures and gaps skipped)."""
    outcomes = [r for r in results if r in ("pass", "fail")]
    return sum(1 for a, b in itertools.pairwise(outcomes) if a != b)


def _always_passed(results: Iterable[Result | None]) -> bool:
    outcomes = [r for r in results if r in ("pass", "fail")]
    return bool(outcomes) and all(r == "pass" for r in outcomes)


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

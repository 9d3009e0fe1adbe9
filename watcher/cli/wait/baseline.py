"""`benchwatch wait --baseline`: which job to compare with, the bounds a comparison must hold, and the regressed
scenarios the JUnit file marks."""

from __future__ import annotations

from collections.abc import Sequence

from watcher.cli.wait.junit import Verdict
from watcher.cli.wait.model import BaselineBounds, ThresholdMiss
from watcher.core.events import JobCompared


def baseline_misses(bounds: BaselineBounds, event: JobCompared) -> tuple[ThresholdMiss, ...]:
    """The bounds the comparison misses: too many regressions, or an agent's significant drop."""
    misses = []
    limit = bounds.max_regressions
    if limit is not None and event.n_regressions > limit:
        message = f"{event.n_regressions} regressions vs {event.baseline_job_name} > max-regressions {limit}"
        misses.append(
            ThresholdMiss(
                threshold="max_regressions", subject="job", value=event.n_regressions, limit=limit, message=message
            )
        )
    if bounds.fail_on_significant_drop:
        misses.extend(
            ThresholdMiss(
                threshold="significant_drop",
                subject=agent.agent_name,
                value=agent.delta,
                limit=0.0,
                message=f"{agent.agent_name} dropped significantly vs {event.baseline_job_name}: "
                f"{agent.baseline_score:.3f} → {agent.score:.3f} ({agent.delta:+.3f}, p = {agent.p_value:.3g})",
            )
            for agent in event.agents
            if agent.significant and agent.delta < 0
        )
    return tuple(misses)


def regressed_scenarios(event: JobCompared | None) -> dict[tuple[str, str | None], frozenset[str]]:
    """Per agent (name, model), the scenario definition ids that regressed: the JUnit file marks them."""
    if event is None:
        return {}
    return {
        (agent.agent_name, agent.model_name): frozenset(r.scenario_definition_id for r in agent.regressions)
        for agent in event.agents
    }


def baseline_verdicts(event: JobCompared | None, misses: Sequence[ThresholdMiss]) -> list[Verdict]:
    """The JUnit testcase of the comparison: failed when a baseline bound was missed."""
    if event is None:
        return []
    missed = [m.message for m in misses if m.threshold in ("max_regressions", "significant_drop")]
    name = f"vs baseline {event.baseline_job_name}"
    return [Verdict(name, "failure", "regression", "; ".join(missed)) if missed else Verdict(name)]

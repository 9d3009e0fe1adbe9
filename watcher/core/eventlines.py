"""One short human line per event: for terminals and logs (not for Slack or email, which render notifications)."""

from __future__ import annotations

from watcher.core.comparison import AgentComparison
from watcher.core.events import (
    Event,
    JobCompared,
    JobDiscovered,
    JobFinished,
    JobInfraDegraded,
    JobProgress,
    JobStalled,
    JobStateChanged,
    JobVanished,
    RunFinished,
    RunStarted,
    ScenarioCanceled,
    ScenarioFailed,
    ScenarioFields,
    ScenarioRecovered,
    ScenarioTimedOut,
    ScoreChanged,
    WatcherApiRecovered,
    WatcherApiUnreachable,
)
from watcher.core.printable import printable


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _counters(event: JobDiscovered | JobProgress) -> str:
    expected = "?" if event.n_expected is None else str(event.n_expected)
    return (
        f"{event.n_done}/{expected} done: {event.n_completed} completed, {event.n_failed} failed, "
        f"{event.n_timeout} timed out, {event.n_canceled} canceled"
    )


def _scenario(event: ScenarioFields) -> str:
    reason = f" — {event.failure_reason.exception_type}" if event.failure_reason else ""
    return (
        f"{event.scenario_name or event.scenario_definition_id} ({event.agent_name or event.benchmark_run_id}){reason}"
    )


def _describe(event: Event) -> str:
    if isinstance(event, JobCompared):
        return compared_line(event)
    return _describe_change(event) or _describe_timed(event) or event.kind


def _describe_change(event: Event) -> str | None:
    """Events the diff finds in a snapshot."""
    match event:
        case JobDiscovered():
            return f"discovered, {event.state}; {_counters(event)}"
        case JobStateChanged():
            return f"{event.from_state} → {event.to_state}"
        case JobFinished():
            reason = f" ({event.failure_reason})" if event.failure_reason else ""
            return f"finished: {event.from_state} → {event.state}{reason}"
        case RunStarted():
            return f"run started: {event.agent_name or '?'} ({event.model_name or 'model n/a'})"
        case RunFinished():
            return (
                f"run finished: {event.agent_name or '?'} score {_score(event.score)}, {event.n_completed} "
                f"completed, {event.n_failed} failed, {event.n_timeout} timed out"
            )
        case ScenarioRecovered():
            return f"scenario recovered after {event.previous_state}: {_scenario(event)}, score {_score(event.score)}"
        case ScoreChanged():
            change = f"{event.old_score:.3f} → {event.new_score:.3f} ({event.delta:+.3f})"
            return f"score of {event.agent_name or '?'}: {change}"
        case JobProgress():
            return _counters(event)
        case ScenarioFailed() | ScenarioTimedOut() | ScenarioCanceled():
            where = " in setup" if event.failure_class == "setup" else ""  # the platform's failure, not the agent's
            return f"{event.kind.split('.', 1)[1].replace('_', ' ')}{where}: {_scenario(event)}"
    return None


def _describe_timed(event: Event) -> str | None:
    """Events that time reveals."""
    match event:
        case JobStalled():
            expected = "?" if event.n_expected is None else str(event.n_expected)
            return f"stalled: no change for {_minutes(event.stalled_for_ms)} ({event.n_done}/{expected} done)"
        case JobVanished():
            return f"vanished: the API answers 404 (last seen {event.last_state})"
        case JobInfraDegraded():
            return infra_line(event)
        case WatcherApiUnreachable():
            return f"the Runloop API is unreachable ({event.failures} failed calls): {event.last_error}"
        case WatcherApiRecovered():
            return f"the Runloop API answers again after {_minutes(event.down_for_ms)}"
    return None


def infra_line(event: JobInfraDegraded) -> str:
    """`infra degraded: 7 of 20 finished scenarios failed in setup (35% > 20%): DevboxSetupError ×7`."""
    types = ", ".join(f"{item.exception_type} ×{item.count}" for item in event.exception_types[:3])
    more = f" and {len(event.exception_types) - 3} more types" if len(event.exception_types) > 3 else ""
    return (
        f"infra degraded: {event.n_setup} of {event.n_done} finished scenarios failed in setup "
        f"({event.setup_ratio:.0%} > {event.infra_alert_ratio:.0%}): {types}{more}"
    )


def compared_line(event: JobCompared) -> str:
    """`vs nightly-41: claude-code 0.62 → 0.55 (−0.07, significant), 9 regressions, 3 fixes`."""
    agents = "; ".join(_agent_change(a) for a in event.agents) or "no agent in common"
    return (
        f"vs {event.baseline_job_name}: {agents}, {_plural(event.n_regressions, 'regression')}, "
        f"{_plural(event.n_fixes, 'fix')}{_power_note(event.agents)}"
    )


def _agent_change(agent: AgentComparison) -> str:
    significant = ", significant" if agent.significant else ""
    return f"{agent.agent_name} {agent.baseline_score:.2f} → {agent.score:.2f} ({_signed(agent.delta)}{significant})"


def _power_note(agents: tuple[AgentComparison, ...]) -> str:
    """`; too few scenarios to detect a 5-point drop (claude-code, codex)`: the warnings' first clause, once."""
    warned = [a for a in agents if a.power_warning]
    if not warned or warned[0].power_warning is None:
        return ""
    return f"; {warned[0].power_warning.partition(':')[0]} ({', '.join(a.agent_name for a in warned)})"


def _signed(delta: float) -> str:
    # a true minus sign, as a person writes it; +0.00 when the change rounds away
    text = f"{delta:+.2f}"
    return "−" + text[1:] if text.startswith("-") and text != "-0.00" else text.replace("-0.00", "+0.00")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}{'es' if noun.endswith('x') else 's'}"


def _minutes(ms: int) -> str:
    minutes, seconds = divmod(round(ms / 1000), 60)
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def event_line(event: Event) -> str:
    """`<job name>: <what happened>` (`benchwatch:` for watcher events), one line, control characters removed."""
    separator = " " if isinstance(event, JobCompared) else ": "  # "nightly-42 vs nightly-41: …"
    return printable(f"{event.job_name or 'benchwatch'}{separator}{_describe(event)}")

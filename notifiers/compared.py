"""The "vs baseline" part of a notification that carries `job.compared` events: plain text pieces every notifier
renders its own way (Slack, email); API strings stay unescaped here and are escaped where they land."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from watcher.core.comparison import AgentComparison, ScenarioRef
from watcher.core.events import JobCompared
from watcher.core.notification import Notification

MAX_LISTED: Final = 10  # scenarios named per list; the rest are counted


def compared_events(notification: Notification) -> list[JobCompared]:
    """The `job.compared` events of a notification, in order."""
    return [event for event in notification.events if isinstance(event, JobCompared)]


def agent_headline(agent: AgentComparison) -> str:
    """`claude-code (model) 0.620 → 0.550 (−0.070, significant; 95 % interval −0.10 … −0.03; McNemar p = 0.004)`,
    with the Holm-adjusted p-value when several agents were compared, and the power warning when there is one."""
    model = f" ({agent.model_name})" if agent.model_name else ""
    verdict = "significant" if agent.significant else "not significant"
    adjusted = ""
    if agent.p_adjusted is not None and agent.p_adjusted != agent.p_value:
        adjusted = f", Holm-adjusted {agent.p_adjusted:.3g}"
    power = f" — {agent.power_warning}" if agent.power_warning else ""
    return (
        f"{agent.agent_name}{model} {agent.baseline_score:.3f} → {agent.score:.3f} ({_signed(agent.delta)}, {verdict}; "
        f"95 % interval {_signed(agent.ci_low)} … {_signed(agent.ci_high)}; McNemar p = {agent.p_value:.3g}{adjusted})"
        f"{power}"
    )


def scenario_lists(agent: AgentComparison) -> list[tuple[str, Sequence[ScenarioRef]]]:
    """The non-empty named lists of one agent: regressed, fixed, flaky, failed in setup, new, missing."""
    lists: list[tuple[str, Sequence[ScenarioRef]]] = [
        ("regressed", agent.regressions),
        ("fixed", agent.fixes),
        ("flaky (not counted)", agent.flaky),
        ("failed in setup (not counted)", agent.infra),
        ("new", agent.new),
        ("missing", agent.missing),
    ]
    return [(label, refs) for label, refs in lists if refs]


def markdown_links(refs: Sequence[ScenarioRef], escape: Callable[[str], str], max_chars: int) -> str:
    """`[name](url), …` for markdown that escapes with `escape` (Discord, Adaptive Cards), as many as fit in
    `max_chars`, then `and N more`. A URL is percent-encoded where markdown would end it early."""
    parts: list[str] = []
    size = 0
    for ref in refs[:MAX_LISTED]:
        label = escape(" ".join(ref.scenario_name.split())[:80])
        part = f"[{label}]({_markdown_url(ref.url)})" if ref.url else label
        if size + len(part) + 2 > max_chars - 20:  # room for "and N more"
            break
        parts.append(part)
        size += len(part) + 2
    more = len(refs) - len(parts)
    return ", ".join(parts) + (f" and {more} more" if more else "")


def _markdown_url(url: str) -> str:
    return url.replace("(", "%28").replace(")", "%29").replace(" ", "%20").replace("<", "%3C").replace(">", "%3E")


def more_than_listed(refs: Sequence[ScenarioRef]) -> int:
    """How many of `refs` are not named (beyond MAX_LISTED)."""
    return max(0, len(refs) - MAX_LISTED)


def _signed(value: float) -> str:
    text = f"{value:+.3f}"
    return "−" + text[1:] if text.startswith("-") else text

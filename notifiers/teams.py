"""The Microsoft Teams notifier: a Workflows (Power Automate) webhook posting an Adaptive Card.

Office 365 connectors are retired; a Workflows "post to a channel when a webhook request is received" flow takes a
`message` whose attachment is an Adaptive Card. Its URL carries a signature (`sig=`): it is a secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from notifiers.base import SecretWebhookConfig
from notifiers.compared import agent_headline, compared_events, markdown_links, scenario_lists
from notifiers.escape import adaptive_card_text, fitted, fitted_lines
from notifiers.http import encode_json
from notifiers.jsonhook import JsonWebhookNotifier
from notifiers.slack_blocks import duration_text
from watcher.core.notification import Notification
from watcher.core.summary import AgentSummary, JobSummary

ADAPTIVE_CARD: Final = "application/vnd.microsoft.card.adaptive"
CARD_VERSION: Final = "1.4"
TITLE_MAX_CHARS: Final = 300
TEXT_MAX_CHARS: Final = 8000
MESSAGE_MAX_BYTES: Final = 27_000  # Teams refuses a message over 28 KB (the request body, as UTF-8 JSON)
MAX_FACTS: Final = 20
FACT_MAX_CHARS: Final = 300
_COLOURS: Final = {"info": "Accent", "warning": "Warning", "critical": "Attention", "resolved": "Good"}


class TeamsConfig(SecretWebhookConfig):
    """`type: teams`: the `webhook_url` of a Teams Workflows flow (it holds a signature: keep it in a secret)."""

    type: Literal["teams"]

    def destination(self) -> str:
        """Where it sends (path and query identify and sign the flow: only the host is shown)."""
        return f"Teams Workflows webhook at {self.webhook_host()}"


class TeamsNotifier(JsonWebhookNotifier[TeamsConfig]):
    """Posts each notification as an Adaptive Card to a Teams channel through a Workflows webhook (which answers 202
    when it accepted it)."""

    def url(self) -> str:
        """The flow's webhook URL (signed: a secret)."""
        return self._config.webhook_url.get_secret_value()

    def document(self, notification: Notification) -> dict[str, Any]:
        """A message with the card as its one attachment."""
        return message(notification)


def message(notification: Notification) -> dict[str, Any]:
    """The request body: a message with the card as its one attachment."""
    return {
        "type": "message",
        "attachments": [
            {"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": card(notification)},
        ],
    }


def card(notification: Notification) -> dict[str, Any]:
    """The Adaptive Card: a coloured title, a status line, the text, the agents as facts, a dashboard button —
    within Teams' message size: fewer comparisons, agents and lines (each counted as "… and N more") until it fits."""
    for shown in _SHRINKING:
        content = _card(notification, shown)
        if len(encode_json(_wrapped(content))) <= MESSAGE_MAX_BYTES:
            break
    return content


@dataclass(frozen=True, slots=True)
class _Shown:
    """How much of a notification a card shows: agents compared, agents as facts, characters of text."""

    compared: int
    facts: int
    text_chars: int


_SHRINKING: Final = (
    _Shown(MAX_FACTS, MAX_FACTS, TEXT_MAX_CHARS),
    _Shown(5, MAX_FACTS, TEXT_MAX_CHARS),
    _Shown(2, 10, 4000),
    _Shown(1, 5, 2000),
    _Shown(0, 3, 1000),
)


def _card(notification: Notification, shown: _Shown) -> dict[str, Any]:
    resolved = notification.action == "resolve"
    title = ("Resolved: " if resolved else "") + _one_line(notification.title)
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": fitted(title, TITLE_MAX_CHARS, adaptive_card_text),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
            "color": _COLOURS["resolved" if resolved else notification.severity],
        },
        {"type": "TextBlock", "text": _status(notification), "isSubtle": True, "spacing": "None", "wrap": True},
    ]
    if notification.text.strip():
        text = fitted_lines(notification.text, shown.text_chars, adaptive_card_text, separator="\n\n")
        body.append({"type": "TextBlock", "text": text, "wrap": True})
    body.extend(_comparison_blocks(notification, shown.compared))
    content: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": body,
    }
    if notification.summary is not None:
        body.extend(_agents(notification.summary, shown.facts))
        content["actions"] = [
            {"type": "Action.OpenUrl", "title": "Runloop dashboard", "url": notification.summary.dashboard_url}
        ]
    return content


def _wrapped(content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message", "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": content}]}


def _comparison_blocks(notification: Notification, max_agents: int) -> list[dict[str, Any]]:
    """ "vs baseline": per agent the change, then its regressed, fixed and flaky scenarios, linked to their runs."""
    blocks: list[dict[str, Any]] = []
    for event in compared_events(notification):
        name = fitted(_one_line(event.baseline_job_name), FACT_MAX_CHARS, adaptive_card_text)
        blocks.append({"type": "TextBlock", "text": f"**vs baseline** {name}", "wrap": True, "separator": True})
        for agent in event.agents[:max_agents]:
            lines = [fitted(_one_line(agent_headline(agent)), TITLE_MAX_CHARS, adaptive_card_text)]
            for label, refs in scenario_lists(agent):
                lines.append(f"{label} ({len(refs)}): {markdown_links(refs, adaptive_card_text, 1500)}")
            blocks.append({"type": "TextBlock", "text": "\n\n".join(lines), "wrap": True})
        if len(event.agents) > max_agents:
            more = f"… and {len(event.agents) - max_agents} more agents compared"
            blocks.append({"type": "TextBlock", "text": more, "wrap": True, "isSubtle": True})
    return blocks


def _status(notification: Notification) -> str:
    parts = [notification.severity, f"rule {notification.rule}"]
    summary = notification.summary
    if summary is not None:
        expected = "?" if summary.n_expected is None else str(summary.n_expected)
        parts += [summary.state, f"{summary.n_done}/{expected} done", f"{summary.n_failed} failed"]
        if summary.failures_by_class.total:
            parts.append(summary.failures_by_class.text())
    return fitted(_one_line(" · ".join(parts)), TITLE_MAX_CHARS, adaptive_card_text)


def _agents(summary: JobSummary, max_facts: int) -> list[dict[str, Any]]:
    if not summary.agents:
        return []
    facts = [_fact(agent) for agent in summary.agents[:max_facts]]
    if len(summary.agents) > max_facts:
        facts.append({"title": "…", "value": f"and {len(summary.agents) - max_facts} more agents"})
    return [{"type": "FactSet", "facts": facts}]


def _fact(agent: AgentSummary) -> dict[str, str]:
    score = "n/a" if agent.score is None else f"{agent.score:.3f}"
    running = " (running)" if not agent.finished else ""
    value = (
        f"score {score}{running} · {agent.n_completed} completed / {agent.n_failed} failed / "
        f"{agent.n_timeout} timed out · {duration_text(agent.duration_ms)}"
    )
    return {
        "title": fitted(_one_line(agent.agent_name or agent.benchmark_run_id), FACT_MAX_CHARS, adaptive_card_text),
        "value": fitted(value, FACT_MAX_CHARS, adaptive_card_text),
    }


def _one_line(text: str) -> str:
    """API text for a title, a status or a fact: whitespace collapsed (a line break in a name would start a block)."""
    return " ".join(text.split())

"""The Microsoft Teams notifier: a Workflows (Power Automate) webhook posting an Adaptive Card.

Office 365 connectors are retired; a Workflows "post to a channel when a webhook request is received" flow takes a
`message` whose attachment is an Adaptive Card. Its URL carries a signature (`sig=`): it is a secret.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from notifiers.base import SecretWebhookConfig
from notifiers.compared import agent_headline, compared_events, markdown_links, scenario_lists
from notifiers.escape import adaptive_card_text, fitted
from notifiers.jsonhook import JsonWebhookNotifier
from notifiers.slack_blocks import duration_text
from watcher.core.notification import Notification
from watcher.core.summary import AgentSummary, JobSummary

ADAPTIVE_CARD: Final = "application/vnd.microsoft.card.adaptive"
CARD_VERSION: Final = "1.4"
TITLE_MAX_CHARS: Final = 300
TEXT_MAX_CHARS: Final = 8000  # Teams refuses messages over about 28 KB; this keeps a card well below
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
    """The Adaptive Card: a coloured title, a status line, the text, the agents as facts, a dashboard button."""
    resolved = notification.action == "resolve"
    title = ("Resolved: " if resolved else "") + " ".join(notification.title.split())
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
        text = fitted(notification.text, TEXT_MAX_CHARS, adaptive_card_text)
        body.append({"type": "TextBlock", "text": text.replace("\n", "\n\n"), "wrap": True})
    body.extend(_comparison_blocks(notification))
    content: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": body,
    }
    if notification.summary is not None:
        body.extend(_agents(notification.summary))
        content["actions"] = [
            {"type": "Action.OpenUrl", "title": "Runloop dashboard", "url": notification.summary.dashboard_url}
        ]
    return content


def _comparison_blocks(notification: Notification) -> list[dict[str, Any]]:
    """ "vs baseline": per agent the change, then its regressed, fixed and flaky scenarios, linked to their runs."""
    blocks: list[dict[str, Any]] = []
    for event in compared_events(notification):
        heading = "**vs baseline** " + fitted(event.baseline_job_name, FACT_MAX_CHARS, adaptive_card_text)
        blocks.append({"type": "TextBlock", "text": heading, "wrap": True, "separator": True})
        for agent in event.agents[:MAX_FACTS]:
            lines = [fitted(agent_headline(agent), TITLE_MAX_CHARS, adaptive_card_text)]
            for label, refs in scenario_lists(agent):
                lines.append(f"{label} ({len(refs)}): {markdown_links(refs, adaptive_card_text, 1500)}")
            blocks.append({"type": "TextBlock", "text": "\n\n".join(lines), "wrap": True})
    return blocks


def _status(notification: Notification) -> str:
    parts = [notification.severity, f"rule {notification.rule}"]
    summary = notification.summary
    if summary is not None:
        expected = "?" if summary.n_expected is None else str(summary.n_expected)
        parts += [summary.state, f"{summary.n_done}/{expected} done", f"{summary.n_failed} failed"]
    return fitted(" · ".join(parts), TITLE_MAX_CHARS, adaptive_card_text)


def _agents(summary: JobSummary) -> list[dict[str, Any]]:
    if not summary.agents:
        return []
    facts = [_fact(agent) for agent in summary.agents[:MAX_FACTS]]
    if len(summary.agents) > MAX_FACTS:
        facts.append({"title": "…", "value": f"and {len(summary.agents) - MAX_FACTS} more agents"})
    return [{"type": "FactSet", "facts": facts}]


def _fact(agent: AgentSummary) -> dict[str, str]:
    score = "n/a" if agent.average_score is None else f"{agent.average_score:.3f}"
    running = " (running)" if not agent.finished else ""
    value = (
        f"score {score}{running} · {agent.n_completed} completed / {agent.n_failed} failed / "
        f"{agent.n_timeout} timed out · {duration_text(agent.duration_ms)}"
    )
    return {
        "title": fitted(agent.agent_name or agent.benchmark_run_id, FACT_MAX_CHARS, adaptive_card_text),
        "value": fitted(value, FACT_MAX_CHARS, adaptive_card_text),
    }

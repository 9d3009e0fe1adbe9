"""The Discord notifier: a channel webhook, one embed per notification in the severity's colour.

Discord's limits are kept after escaping: title 256, description 4096, 25 fields (name 256, value 1024), footer 2048,
10 embeds and 6000 characters over all embeds. `allowed_mentions: {parse: []}` means no string can ping anyone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import Field

from notifiers.base import SecretWebhookConfig
from notifiers.compared import agent_headline, compared_events, markdown_links, scenario_lists
from notifiers.escape import discord_markdown, fitted, fitted_lines
from notifiers.http import rfc3339
from notifiers.jsonhook import JsonWebhookNotifier
from notifiers.slack_blocks import duration_text
from watcher.core.notification import Notification
from watcher.core.summary import AgentSummary

TITLE_MAX_CHARS: Final = 256
DESCRIPTION_MAX_CHARS: Final = 4096
FIELD_NAME_MAX_CHARS: Final = 256
FIELD_VALUE_MAX_CHARS: Final = 1024
FOOTER_MAX_CHARS: Final = 2048
MAX_FIELDS: Final = 25
MAX_EMBEDS: Final = 10
EMBEDS_MAX_CHARS: Final = 6000
MAX_AGENT_FIELDS: Final = 10
COLOURS: Final = {"info": 0x3498DB, "warning": 0xE67E22, "critical": 0xE74C3C, "resolved": 0x2ECC71}


class DiscordConfig(SecretWebhookConfig):
    """`type: discord`: a channel's `webhook_url` (it holds the webhook's token: keep it in a secret)."""

    type: Literal["discord"]
    username: str | None = Field(None, max_length=80, description="the name the messages are posted under")
    # Discord allows a webhook about 5 requests per 2 s; staying under it avoids 429s in a burst.
    rate_per_s: float | None = Field(2.0, gt=0)

    def destination(self) -> str:
        """Where it sends (the URL's path holds the token: only the host is shown)."""
        return f"Discord webhook at {self.webhook_host()}"


class DiscordNotifier(JsonWebhookNotifier[DiscordConfig]):
    """Posts each notification as an embed to a Discord channel webhook (a 429 carries Retry-After)."""

    def url(self) -> str:
        """The channel webhook's URL (a secret)."""
        return self._config.webhook_url.get_secret_value()

    def document(self, notification: Notification) -> dict[str, Any]:
        """One message with one embed."""
        return message(notification, username=self._config.username)


def message(notification: Notification, *, username: str | None = None) -> dict[str, Any]:
    """The webhook body: one embed, no content, no mentions allowed."""
    body: dict[str, Any] = {"embeds": [embed(notification)][:MAX_EMBEDS], "allowed_mentions": {"parse": []}}
    if username is not None:
        body["username"] = username
    return body


def embed(notification: Notification) -> dict[str, Any]:
    """Title, text, the agents as fields, a footer naming rule and job; within every limit after escaping."""
    resolved = notification.action == "resolve"
    title = ("Resolved: " if resolved else "") + " ".join(notification.title.split())
    result: dict[str, Any] = {
        "title": fitted(title, TITLE_MAX_CHARS, discord_markdown) if title else "benchwatch",
        "description": fitted_lines(notification.text, DESCRIPTION_MAX_CHARS, discord_markdown),
        "color": COLOURS["resolved" if resolved else notification.severity],
        "timestamp": rfc3339(notification.created_ms),
    }
    summary = notification.summary
    footer = f"{notification.severity} · rule {' '.join(notification.rule.split())}"
    fields = _comparison_fields(notification)
    unshown: Counter[str] = Counter()
    if summary is not None:
        result["url"] = summary.dashboard_url
        agents = summary.agents
        fields += [(_agent_field(agent), "agents") for agent in agents[:MAX_AGENT_FIELDS]]
        unshown["agents"] = max(0, len(agents) - MAX_AGENT_FIELDS)
        footer += f" · job {summary.job_id} · {' '.join(summary.state.split())}"
        if summary.failures_by_class.total:
            footer += f" · failures: {summary.failures_by_class.text()}"
    result["footer"] = {"text": fitted(footer, FOOTER_MAX_CHARS, discord_markdown)}
    return _within_total(result, fields, +unshown)


def _comparison_fields(notification: Notification) -> list[tuple[dict[str, Any], str]]:
    """Per agent of each `job.compared`: the change vs the baseline, then the regressed and fixed scenarios linked."""
    fields = []
    for event in compared_events(notification):
        for agent in event.agents:
            lines = [fitted(" ".join(agent_headline(agent).split()), 400, discord_markdown)]
            budget = (FIELD_VALUE_MAX_CHARS - len(lines[0])) // 2 - 30  # two lists, each with its label
            for label, refs in scenario_lists(agent)[:2]:  # regressed and fixed: the rest is in the event
                lines.append(f"{label} ({len(refs)}): {markdown_links(refs, discord_markdown, budget)}")
            name = " ".join(f"vs baseline {event.baseline_job_name}: {agent.agent_name}".split())
            field = {
                "name": fitted(name, FIELD_NAME_MAX_CHARS, discord_markdown),
                "value": "\n".join(lines)[:FIELD_VALUE_MAX_CHARS],
                "inline": False,
            }
            fields.append((field, "comparisons"))
    return fields


def _agent_field(agent: AgentSummary) -> dict[str, Any]:
    score = "n/a" if agent.score is None else f"{agent.score:.3f}"
    running = " (running)" if not agent.finished else ""
    value = (
        f"score {score}{running} · {agent.n_completed} completed / {agent.n_failed} failed / "
        f"{agent.n_timeout} timed out · {duration_text(agent.duration_ms)}"
    )
    name = agent.agent_name or agent.benchmark_run_id
    return {
        "name": fitted(name, FIELD_NAME_MAX_CHARS, discord_markdown),
        "value": fitted(value, FIELD_VALUE_MAX_CHARS, discord_markdown),
        "inline": True,
    }


def embed_chars(result: dict[str, Any]) -> int:
    """The characters Discord counts against the 6000 of a message: title, description, fields, footer."""
    fields = sum(len(field["name"]) + len(field["value"]) for field in result.get("fields", []))
    description = result.get("description", "")
    return len(result["title"]) + len(description) + fields + len(result["footer"]["text"])


def _within_total(
    result: dict[str, Any], fields: list[tuple[dict[str, Any], str]], unshown: Counter[str]
) -> dict[str, Any]:
    """The fields that fit in 25 and in 6000 characters, in order; what is left out (and `unshown`) is counted in a
    last `… and N more` field. Then, if need be, the description is cut; an empty one is left out."""
    room = EMBEDS_MAX_CHARS - embed_chars(result)
    kept: list[dict[str, Any]] = []
    left_out = Counter(unshown)
    for index, (field, _) in enumerate(fields):
        after = left_out + Counter(noun for _, noun in fields[index + 1 :])
        tail = _size(_more_field(after)) if after else 0
        if len(kept) + (2 if after else 1) > MAX_FIELDS or _size(field) + tail > room:
            left_out += Counter(noun for _, noun in fields[index:])
            break
        kept.append(field)
        room -= _size(field)
    if left_out and _size(_more_field(left_out)) <= room:
        kept.append(_more_field(left_out))
    if kept:
        result["fields"] = kept
    excess = embed_chars(result) - EMBEDS_MAX_CHARS
    if excess > 0:
        description = result["description"]
        cut = description[: max(0, len(description) - excess - 1)]
        result["description"] = cut.rstrip("\\") + "…"
    if not result["description"]:
        del result["description"]
    return result


def _size(field: dict[str, Any]) -> int:
    return len(field["name"]) + len(field["value"])


def _more_field(left_out: Mapping[str, int]) -> dict[str, Any]:
    """`… and 3 more comparisons, 10 more agents`: what the embed had no room for (the webhook's events hold it)."""
    counted = ", ".join(f"{count} more {noun}" for noun, count in left_out.items())
    return {"name": "…", "value": f"and {counted}", "inline": False}

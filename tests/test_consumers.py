"""What we send, judged by the consumers' own code, over every event kind and hostile, huge input (tests/hostile.py):
Slack's Block Kit models (slack-sdk, which enforces Slack's limits), Discord's documented embed limits, the
CloudEvents SDK reading the webhook's CloudEvents requests as sent, and JSON Schema validation of every event against
the published docs/events.schema.json. (Teams cards: tests/test_teams_cards.py; JUnit: tests/test_wait.py;
Prometheus: tests/test_metrics.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from slack_sdk.models.blocks import Block

from notifiers.discord import message as discord_message
from notifiers.protocol import NotifierContext
from notifiers.slack_blocks import MAX_BLOCKS, message_blocks, message_text, root_blocks, root_text
from notifiers.webhook import CLOUDEVENTS_CONTENT_TYPE, WebhookConfig, WebhookNotifier, notification_json
from tests.conftest import ServerFactory
from tests.fakes.chat import discord_problems
from tests.fakes.webhook import WebhookReceiver
from tests.hostile import notifications, story
from watcher.core.events import EVENT_KINDS
from watcher.core.notification import Notification
from watcher.core.summary import MAX_EXAMPLE_MESSAGE_CHARS

SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "events.schema.json").read_text())
LABELS = [label for label, _ in notifications()]
# Discord's documented limits (discord.com/developers/docs/resources/message#embed-object-embed-limits)
DISCORD = {"title": 256, "description": 4096, "fields": 25, "field.name": 256, "field.value": 1024, "footer": 2048,
           "embeds": 10, "total": 6000}  # fmt: skip


def notification(label: str) -> Notification:
    return dict(notifications())[label]


def test_the_hostile_input_is_hostile_and_huge() -> None:
    told = story()
    assert {event.kind for event in told.events} == set(EVENT_KINDS)
    assert len(told.summary.agents) == 20 and told.summary.n_failed + told.summary.n_timeout >= 450
    reasons = [getattr(event, "failure_reason", None) for event in told.events]
    messages = [reason.exception_message for reason in reasons if reason is not None]
    assert len(messages) >= 380 and max(len(message) for message in messages) == 10_000
    examples = [example.message for group in told.summary.failures for example in group.examples]
    assert max(len(message) for message in examples) == MAX_EXAMPLE_MESSAGE_CHARS  # a summary keeps examples short
    assert "<!channel>" in told.summary.job_name and "{{DATE(" in told.summary.job_name


# -- Slack: Block Kit, as slack-sdk models it ---------------------------------------------------------------------


def _texts(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [v for k, v in value.items() if k == "text" and isinstance(v, str)] + [
            text for k, v in value.items() if not (k == "text" and isinstance(v, str)) for text in _texts(v)
        ]
    if isinstance(value, list):
        return [text for item in value for text in _texts(item)]
    return []


@pytest.mark.parametrize("label", LABELS)
def test_slack_blocks_pass_slack_sdk_s_block_kit_models(label: str) -> None:
    sent = notification(label)
    for blocks in (message_blocks(sent), root_blocks(sent)):
        assert 0 < len(blocks) <= MAX_BLOCKS
        for block in blocks:
            parsed = Block.parse(block)
            assert parsed is not None, block["type"]
            parsed.validate_json()  # raises SlackObjectFormationError past a limit: header 150, section 3000, ...
            assert parsed.to_dict() == block  # nothing slack-sdk does not know of, nothing dropped
        assert all(text.strip() for text in _texts(blocks)), "Slack refuses an empty text"
    assert 0 < len(message_text(sent)) <= 3000 and len(root_text(sent)) <= 3000


def test_what_does_not_fit_in_slack_is_counted_not_refused() -> None:
    sections = "\n".join(b["text"]["text"] for b in message_blocks(notification("every event")) if "text" in b)
    for noun in ("lines", "exception types"):  # 20 agents fit in three sections
        assert re.search(rf"… and \d+ more {noun}", sections), noun


# -- Discord: the documented embed limits -------------------------------------------------------------------------


def _discord_limits_broken(body: dict[str, Any]) -> list[str]:
    """Every documented limit an execute-webhook body breaks, counted as Discord counts (characters)."""
    embeds = body["embeds"]
    broken = [] if len(embeds) <= DISCORD["embeds"] else ["embeds"]
    total = 0
    for embed in embeds:
        sizes = {
            "title": len(embed.get("title", "")),
            "description": len(embed.get("description", "")),
            "footer": len(embed.get("footer", {}).get("text", "")),
            "fields": len(embed.get("fields", [])),
        }
        broken += [key for key, size in sizes.items() if size > DISCORD[key]]
        for field in embed.get("fields", []):
            broken += [
                f"field.{key}" for key in ("name", "value") if not 0 < len(field[key]) <= DISCORD[f"field.{key}"]
            ]
            total += len(field["name"]) + len(field["value"])
        broken += [key for key in ("title", "description") if key in embed and not embed[key]]  # empty: refused
        total += sizes["title"] + sizes["description"] + sizes["footer"]
    return broken + (["total"] if total > DISCORD["total"] else [])


@pytest.mark.parametrize("label", LABELS)
def test_discord_embeds_keep_every_documented_limit(label: str) -> None:
    body = discord_message(notification(label), username="benchwatch")
    assert _discord_limits_broken(body) == [] and discord_problems(body) == []
    assert body["allowed_mentions"] == {"parse": []}


def test_what_does_not_fit_in_discord_is_counted() -> None:
    (embed,) = discord_message(notification("every event"))["embeds"]
    assert re.search(r"… and \d+ more lines$", embed["description"])
    assert embed["fields"][-1]["name"] == "…"
    assert re.fullmatch(r"and \d+ more agents, \d+ more comparisons", embed["fields"][-1]["value"])
    (embed,) = discord_message(notification("job.finished"))["embeds"]
    assert embed["fields"][-1]["value"] == "and 10 more agents" and len(embed["fields"]) == 11


# -- CloudEvents: the SDK reads the requests as the webhook notifier sent them -----------------------------------


async def test_the_cloudevents_sdk_reads_every_request_as_sent(
    aiohttp_server: ServerFactory, context: NotifierContext
) -> None:
    receiver = WebhookReceiver()
    server = await aiohttp_server(receiver.app(client_max_size=16 * 1024**2))  # 500 events of 10 kB: 6 MB
    config = WebhookConfig.model_validate(
        {"type": "webhook", "url": str(server.make_url("/ce")), "format": "cloudevents"}
    )
    notifier = WebhookNotifier("ce", config, context)
    sent = [sent for _, sent in notifications()]
    for each in sent:
        await notifier.send(each)
    assert len(receiver.requests) == len(sent)
    for request, each in zip(receiver.requests, sent, strict=True):
        assert request.headers["Content-Type"] == CLOUDEVENTS_CONTENT_TYPE
        event = from_http_event(HTTPMessage(headers=request.headers, body=request.body))
        assert (event.get_specversion(), event.get_id(), event.get_type()) == (
            "1.0",
            each.id,
            "benchwatch.notification",
        )
        assert event.get_source().startswith("benchwatch/") and event.get_subject() == (each.job_id or None)
        assert event.get_time() is not None and event.get_datacontenttype() == "application/json"
        assert event.get_data() == json.loads(json.dumps(notification_json(each)))


# -- events: every one valid against the published JSON Schema ----------------------------------------------------


@pytest.mark.slow
def test_every_event_validates_against_the_published_schema() -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    events = [event for _, sent in notifications() for event in sent.events]
    assert {event.kind for event in events} == set(EVENT_KINDS) and len(events) > 1000
    for event in events:
        errors = [error.message for error in validator.iter_errors(json.loads(event.model_dump_json()))]
        assert errors == [], event.kind
    broken = json.loads(story().events[0].model_dump_json()) | {"n_done": "many"}
    assert list(validator.iter_errors(broken))  # the schema does catch what is wrong

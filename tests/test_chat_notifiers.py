"""Teams and Discord: what the receivers get — escaped API strings, Discord's limits, colours, no mentions — and
Retry-After honoured through the delivery worker's classified errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from notifiers.discord import COLOURS, EMBEDS_MAX_CHARS, DiscordConfig, DiscordNotifier, embed, embed_chars
from notifiers.escape import adaptive_card_text, discord_markdown, fitted, fitted_lines
from notifiers.protocol import NotifierContext, PermanentSendError, RetryableSendError
from notifiers.teams import TeamsConfig, TeamsNotifier
from tests.fakes.base import Reply
from tests.fakes.chat import FakeDiscord, FakeTeamsWorkflow, discord_problems, rate_limited
from watcher.app.config import load_config
from watcher.config.loader import ConfigError
from watcher.core.notification import Notification
from watcher.core.summary import AgentSummary
from watcher.pipeline.sample import sample_notification

NOW_MS = 1_788_228_000_000
HOSTILE = "nightly **7** @everyone <@123> [click](https://evil.example) {{DATE(2026-01-01T00:00:00Z)}}"


def hostile(**changes: Any) -> Notification:
    base = sample_notification("chat", NOW_MS)
    return base.model_copy(update={"title": HOSTILE, "text": f"- {HOSTILE}\n# heading", **changes})


async def discord(aiohttp_server: Any, context: NotifierContext) -> tuple[FakeDiscord, DiscordNotifier]:
    fake = FakeDiscord()
    server = await aiohttp_server(fake.app())
    url = str(server.make_url("/api/webhooks/1/TOKEN"))
    config = DiscordConfig.model_validate({"type": "discord", "webhook_url": url, "username": "benchwatch"})
    return fake, DiscordNotifier("discord", config, context)


async def test_discord_gets_an_escaped_embed_in_the_severity_colour_with_no_mentions(
    aiohttp_server: Any, context: NotifierContext
) -> None:
    fake, notifier = await discord(aiohttp_server, context)
    await notifier.send(hostile(severity="critical"))
    body = fake.bodies()[0]
    assert body["allowed_mentions"] == {"parse": []} and body["username"] == "benchwatch"
    (sent,) = body["embeds"]
    assert sent["color"] == COLOURS["critical"]
    assert sent["title"] == discord_markdown(HOSTILE)
    assert "\\*\\*7\\*\\*" in sent["title"] and "\\<\\@123>" in sent["title"] and "\\[click\\]" in sent["title"]
    assert sent["description"].startswith("\\- nightly") and "\\# heading" in sent["description"]
    assert [field["name"] for field in sent["fields"]] == ["claude-code", "codex"]
    assert sent["url"].startswith("https://")


async def test_discord_limits_hold_after_escaping(aiohttp_server: Any, context: NotifierContext) -> None:
    fake, notifier = await discord(aiohttp_server, context)
    base = sample_notification("chat", NOW_MS)
    assert base.summary is not None
    agent = base.summary.agents[0]
    many = tuple(agent.model_copy(update={"agent_name": "*" * 300}) for _ in range(40))
    huge = base.model_copy(
        update={"title": "_" * 1000, "text": "*" * 10_000, "summary": base.summary.model_copy(update={"agents": many})}
    )
    await notifier.send(huge)  # the fake answers 400 to anything over a limit
    (sent,) = fake.bodies()[0]["embeds"]
    assert discord_problems(fake.bodies()[0]) == []
    assert len(sent["title"]) <= 256 and sent["title"].endswith("…") and embed_chars(sent) <= EMBEDS_MAX_CHARS
    assert len(sent["fields"]) <= 10 and all(isinstance(field["name"], str) for field in sent["fields"])


async def test_discord_rate_limits_are_retryable_with_the_wait(aiohttp_server: Any, context: NotifierContext) -> None:
    fake, notifier = await discord(aiohttp_server, context)
    fake.then(rate_limited(2.5))
    with pytest.raises(RetryableSendError) as caught:
        await notifier.send(sample_notification("chat", NOW_MS))
    assert (caught.value.reason, caught.value.retry_after_s) == ("rate_limited", 2.5)
    fake.then(Reply(400, {"code": 50035, "message": "Invalid Form Body"}))
    with pytest.raises(PermanentSendError):
        await notifier.send(sample_notification("chat", NOW_MS))
    assert "TOKEN" not in repr(notifier) and "TOKEN" not in notifier._what


async def test_teams_gets_an_adaptive_card_with_escaped_text(aiohttp_server: Any, context: NotifierContext) -> None:
    fake = FakeTeamsWorkflow()
    server = await aiohttp_server(fake.app())
    url = str(server.make_url("/workflows/1/triggers/manual/paths/invoke?sig=S1GNATURE"))
    notifier = TeamsNotifier("teams", TeamsConfig.model_validate({"type": "teams", "webhook_url": url}), context)
    await notifier.send(hostile(severity="warning"))
    await notifier.send(hostile(action="resolve"))
    card, resolved = fake.cards()
    title = card["body"][0]
    assert title["color"] == "Warning" and resolved["body"][0]["color"] == "Good"
    assert title["text"] == adaptive_card_text(HOSTILE)
    assert "\\*\\*7\\*\\*" in title["text"] and "\\[click\\]" in title["text"] and "{{DATE" not in title["text"]
    text = card["body"][2]["text"]
    assert text.startswith("\\- nightly") and "\\# heading" in text
    facts = card["body"][3]["facts"]
    assert [fact["title"] for fact in facts] == ["claude-code", "codex"] and "score" in facts[0]["value"]
    assert card["actions"][0]["type"] == "Action.OpenUrl"
    assert "S1GNATURE" not in repr(notifier) and "S1GNATURE" not in notifier._what


def test_secret_urls_never_appear_in_destinations_or_config_errors(tmp_path: Path) -> None:
    url = "https://discord.com/api/webhooks/1/SEKRET"
    config = DiscordConfig.model_validate({"type": "discord", "webhook_url": url})
    assert config.destination() == "Discord webhook at discord.com" and "SEKRET" not in repr(config)
    path = tmp_path / "benchwatch.yaml"
    path.write_text("notifiers:\n  t: {type: teams, webhook_url: 'ftp://x/SEKRET'}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value) == f"{path}:2: notifiers.t.webhook_url: expected an http:// or https:// URL"


def test_agent_rows_are_escaped_everywhere() -> None:
    row = AgentSummary(
        benchmark_run_id="bmr_1", agent_name="a_b*c", model_name=None, finished=True, score=0.5, average_score=0.5,
        n_completed=1, n_failed=0, n_timeout=0, duration_ms=1000, url="https://x",
    )  # fmt: skip
    base = sample_notification("chat", NOW_MS)
    assert base.summary is not None
    summary = base.summary.model_copy(update={"agents": (row,)})
    assert embed(base.model_copy(update={"summary": summary}))["fields"][0]["name"] == "a\\_b\\*c"


def test_a_cut_text_is_escaped_as_a_whole_not_character_by_character() -> None:
    text = "{{DATE(x)}}\n- item\n# heading " + "y" * 400
    for escape in (adaptive_card_text, discord_markdown):
        cut = fitted(text, 60, escape)
        assert len(cut) <= 60 and cut.endswith("…") and cut[:-1] == escape(text)[: len(cut) - 1]
    assert "{{" not in fitted(text, 60, adaptive_card_text) and "\\- item" in fitted(text, 60, adaptive_card_text)


def test_lines_that_do_not_fit_are_counted() -> None:
    lines = "\n".join(f"- line {i} *" for i in range(100))
    kept = fitted_lines(lines, 200, discord_markdown)
    assert len(kept) <= 200 and kept.startswith("\\- line 0 \\*\n")
    assert re.search(r"\n… and (\d+) more lines$", kept)
    shown = kept.count("\\- line")
    assert kept.endswith(f"… and {100 - shown} more lines")
    assert fitted_lines("x" * 500 + "\nsecond", 100, discord_markdown) == "x" * 80 + "…\nsecond"  # in the tail's room
    assert fitted_lines("x" * 500 + "\n" + "y" * 50, 100, discord_markdown) == "x" * 80 + "…\n… and 1 more lines"
    assert fitted_lines("a\n\n b \n", 100, discord_markdown) == "a\n b "

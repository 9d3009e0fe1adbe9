"""Fake chat receivers: a Discord channel webhook and a Teams Workflows webhook, each checking what it is sent the
way the real service does (written from their documentation, not from our notifiers).

Discord answers 204 (200 with the message under `?wait=true`), 400 with a JSON error when an embed breaks a limit,
and 429 with `retry_after` in the body and `Retry-After` in the headers. A Workflows webhook answers 202.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.base import FakeServer, Recorded, Reply

DISCORD_LIMITS = {"title": 256, "description": 4096, "footer": 2048, "field_name": 256, "field_value": 1024}


def discord_problems(body: Any) -> list[str]:
    """How a webhook body breaks Discord's rules (empty when Discord would take it)."""
    if not isinstance(body, dict) or not (body.get("content") or body.get("embeds")):
        return ["Cannot send an empty message"]
    embeds = body.get("embeds", [])
    problems = ["embeds: more than 10"] if len(embeds) > 10 else []
    total = 0
    for embed in embeds:
        sizes = {
            "title": len(embed.get("title", "")),
            "description": len(embed.get("description", "")),
            "footer": len(embed.get("footer", {}).get("text", "")),
        }
        fields = embed.get("fields", [])
        if len(fields) > 25:
            problems.append("fields: more than 25")
        for field in fields:
            sizes["field_name"] = max(sizes.get("field_name", 0), len(field["name"]))
            sizes["field_value"] = max(sizes.get("field_value", 0), len(field["value"]))
            total += len(field["name"]) + len(field["value"])
        problems += [f"{key}: over {DISCORD_LIMITS[key]}" for key, size in sizes.items() if size > DISCORD_LIMITS[key]]
        total += sizes["title"] + sizes["description"] + sizes["footer"]
    if total > 6000:
        problems.append("embeds: over 6000 characters in total")
    return problems


class FakeDiscord(FakeServer):
    """A Discord channel webhook."""

    def answer(self, recorded: Recorded) -> Reply:
        """204, or 400 with Discord's error shape when the body breaks a rule."""
        try:
            problems = discord_problems(json.loads(recorded.body))
        except ValueError:
            problems = ["The request body contains invalid JSON."]
        if problems:
            return Reply(400, {"code": 50035, "message": "Invalid Form Body", "errors": problems})
        return Reply(200, {"id": "1"}) if "wait=true" in recorded.path else Reply(204)

    def bodies(self) -> list[dict[str, Any]]:
        """Every body posted."""
        return [recorded.json() for recorded in self.requests]


def rate_limited(retry_after_s: float) -> Reply:
    """Discord's 429: the wait in the body and in the header."""
    body = {"message": "You are being rate limited.", "retry_after": retry_after_s, "global": False}
    return Reply(429, body, headers={"Retry-After": f"{retry_after_s:g}"})


class FakeTeamsWorkflow(FakeServer):
    """A Teams Workflows webhook: 202 for a message carrying an Adaptive Card, 400 otherwise."""

    def answer(self, recorded: Recorded) -> Reply:
        """Accept a message whose attachment is an Adaptive Card."""
        try:
            body = json.loads(recorded.body)
            attachment = body["attachments"][0]
            ok = (
                body["type"] == "message"
                and attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
                and attachment["content"]["type"] == "AdaptiveCard"
            )
        except (ValueError, KeyError, IndexError, TypeError):
            ok = False
        return Reply(202) if ok else Reply(400, {"error": {"code": "InvalidRequestContent"}})

    def cards(self) -> list[dict[str, Any]]:
        """The Adaptive Card of every message posted."""
        return [recorded.json()["attachments"][0]["content"] for recorded in self.requests]

"""A fake Slack: the Web API's chat.postMessage and chat.update, and an incoming webhook, as slack-sdk talks to them.

Scripted replies (`then(Reply(429, ...))`) come first, as with every fake; otherwise it answers like Slack: a
missing or wrong bearer token is `not_authed` / `invalid_auth`, a posted message gets an increasing `ts`, and
updating a message that does not exist (or was `forget`-ten) is `message_not_found`.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from tests.fakes.base import FakeServer, Recorded, Reply

WEBHOOK_PATH = "/services/T0001/B0001/XXXXXXXXXXXXXXXXXXXXXXXX"
CHANNEL_ID = "C123"


class FakeSlack(FakeServer):
    """Slack as slack-sdk sees it; `posts()`, `updates()` and `webhook_posts()` read what was sent, `posted_ts`
    the ts it gave each posted message."""

    def __init__(self, *, token: str | None = None, answer_delay_s: float = 0.0) -> None:
        super().__init__()
        self.token = token
        self.answer_delay_s = answer_delay_s
        self.live_ts: set[str] = set()
        self.posted_ts: list[str] = []
        self._next_ts = 1_788_228_000_000_100

    def answer(self, recorded: Recorded) -> Reply:
        """Answer one request like Slack would."""
        path = urllib.parse.urlsplit(recorded.path).path
        if path.startswith("/services/"):
            return Reply(200, "ok", delay_s=self.answer_delay_s)
        if not path.startswith("/api/"):
            return Reply(404, "Not Found")
        body = self._web_api(path.removeprefix("/api/"), recorded)
        return Reply(200, body, delay_s=self.answer_delay_s)

    def forget(self, ts: str) -> None:
        """Delete a message: updating it now fails with message_not_found."""
        self.live_ts.discard(ts)

    def calls(self, method: str) -> list[dict[str, Any]]:
        """The fields of every call of a Web API method, in order."""
        return [fields(recorded) for recorded in self.requests if recorded.path.split("?")[0] == f"/api/{method}"]

    def posts(self) -> list[dict[str, Any]]:
        """Every chat.postMessage call's fields (`channel`, `text`, `blocks`, `thread_ts`, ...)."""
        return self.calls("chat.postMessage")

    def updates(self) -> list[dict[str, Any]]:
        """Every chat.update call's fields."""
        return self.calls("chat.update")

    def webhook_posts(self) -> list[dict[str, Any]]:
        """Every incoming-webhook payload."""
        return [recorded.json() for recorded in self.requests if recorded.path.startswith("/services/")]

    def _web_api(self, method: str, recorded: Recorded) -> dict[str, Any]:
        denied = self._auth_error(recorded.headers.get("Authorization", ""))
        if denied is not None:
            return {"ok": False, "error": denied}
        sent = fields(recorded)
        if method == "chat.postMessage":
            return self._post_message(sent)
        if method == "chat.update":
            return self._update(sent)
        return {"ok": False, "error": "unknown_method"}

    def _auth_error(self, authorization: str) -> str | None:
        if not authorization.startswith("Bearer "):
            return "not_authed"
        if self.token is not None and authorization.removeprefix("Bearer ") != self.token:
            return "invalid_auth"
        return None

    def _post_message(self, sent: dict[str, Any]) -> dict[str, Any]:
        if not sent.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        self._next_ts += 100
        ts = f"{self._next_ts // 1_000_000}.{self._next_ts % 1_000_000:06d}"
        self.live_ts.add(ts)
        self.posted_ts.append(ts)
        message = {"type": "message", "text": sent.get("text", ""), "ts": ts, "blocks": sent.get("blocks", [])}
        if sent.get("thread_ts"):
            message["thread_ts"] = sent["thread_ts"]
        return {"ok": True, "channel": CHANNEL_ID, "ts": ts, "message": message}

    def _update(self, sent: dict[str, Any]) -> dict[str, Any]:
        if sent.get("channel") != CHANNEL_ID:
            return {"ok": False, "error": "channel_not_found"}
        if sent.get("ts") not in self.live_ts:
            return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": CHANNEL_ID, "ts": sent["ts"], "text": sent.get("text", "")}


def fields(recorded: Recorded) -> dict[str, Any]:
    """A Web API call's arguments, sent as JSON or as a form (where `blocks` is a JSON string)."""
    if recorded.headers.get("Content-Type", "").startswith("application/json"):
        parsed: dict[str, Any] = recorded.json()
        return parsed
    form = dict(urllib.parse.parse_qsl(recorded.body.decode()))
    return {key: json.loads(value) if key in ("blocks", "attachments") else value for key, value in form.items()}

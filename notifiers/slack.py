"""The Slack notifier: an incoming webhook, or a bot token and channel through the Web API (threads per job)."""

from __future__ import annotations

import urllib.parse
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from notifiers.base import NotifierConfigBase


class SlackConfig(NotifierConfigBase):
    """`type: slack`: give `webhook_url`, or `token` and `channel`; `thread` keeps one root message per job."""

    type: Literal["slack"]
    webhook_url: SecretStr | None = None
    token: SecretStr | None = None
    channel: str | None = None
    base_url: str = "https://slack.com/api/"
    thread: bool = True
    rate_per_s: float | None = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _one_way_in(self) -> Self:
        if self.webhook_url is None and self.token is None:
            raise ValueError("give webhook_url, or token and channel")
        if self.webhook_url is not None and self.token is not None:
            raise ValueError("give webhook_url or token, not both")
        if self.token is not None and not self.channel:
            raise ValueError("a token needs a channel")
        return self

    def destination(self) -> str:
        """Where it sends (the webhook URL is a secret: only its host is shown)."""
        if self.webhook_url is not None:
            host = urllib.parse.urlsplit(self.webhook_url.get_secret_value()).netloc
            return f"incoming webhook at {host}"
        thread = ", threaded per job" if self.thread else ""
        return f"channel {self.channel} via {self.base_url}{thread}"

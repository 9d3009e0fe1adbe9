"""The notifier types benchwatch knows: one line each. A new type is one module and one line here."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from notifiers.console import ConsoleConfig
from notifiers.email import EmailConfig
from notifiers.pagerduty import PagerDutyConfig
from notifiers.slack import SlackConfig
from notifiers.webhook import WebhookConfig

NotifierConfig = Annotated[
    ConsoleConfig | SlackConfig | EmailConfig | WebhookConfig | PagerDutyConfig,
    Field(discriminator="type"),
]
"""A notifier's settings, chosen by its `type`."""

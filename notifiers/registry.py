"""The notifier types benchwatch knows: one line each. A new type is one module and one line here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from notifiers.alertmanager import AlertmanagerConfig, AlertmanagerNotifier
from notifiers.apprise import AppriseConfig, AppriseNotifier
from notifiers.console import ConsoleConfig, ConsoleNotifier
from notifiers.discord import DiscordConfig, DiscordNotifier
from notifiers.email import EmailConfig, EmailNotifier
from notifiers.pagerduty import PagerDutyConfig, PagerDutyNotifier
from notifiers.protocol import Notifier, NotifierContext
from notifiers.slack import SlackConfig, SlackNotifier
from notifiers.teams import TeamsConfig, TeamsNotifier
from notifiers.webhook import WebhookConfig, WebhookNotifier
from notifiers.worker import DeliveryPolicy
from watcher.core.clock import Clock

NotifierConfig = Annotated[
    ConsoleConfig
    | SlackConfig
    | EmailConfig
    | WebhookConfig
    | PagerDutyConfig
    | TeamsConfig
    | DiscordConfig
    | AlertmanagerConfig
    | AppriseConfig,
    Field(discriminator="type"),
]
"""A notifier's settings, chosen by its `type`."""

_BUILDERS: dict[type[Any], Callable[[str, Any, NotifierContext, Clock], Notifier]] = {
    ConsoleConfig: lambda name, config, context, clock: ConsoleNotifier(name, config, context),
    SlackConfig: lambda name, config, context, clock: SlackNotifier(name, config, context, clock=clock),
    EmailConfig: lambda name, config, context, clock: EmailNotifier(name, config, context, clock=clock),
    WebhookConfig: lambda name, config, context, clock: WebhookNotifier(name, config, context, clock=clock),
    PagerDutyConfig: lambda name, config, context, clock: PagerDutyNotifier(name, config, context, clock=clock),
    TeamsConfig: lambda name, config, context, clock: TeamsNotifier(name, config, context, clock=clock),
    DiscordConfig: lambda name, config, context, clock: DiscordNotifier(name, config, context, clock=clock),
    AlertmanagerConfig: lambda name, config, context, clock: AlertmanagerNotifier(name, config, context, clock=clock),
    AppriseConfig: lambda name, config, context, clock: AppriseNotifier(name, config, context, clock=clock),
}


def build_notifier(name: str, config: NotifierConfig, context: NotifierContext, clock: Clock) -> Notifier:
    """The notifier a config describes."""
    return _BUILDERS[type(config)](name, config, context, clock)


def delivery_policy(config: NotifierConfig) -> DeliveryPolicy:
    """The delivery worker's limits for a notifier, from its config."""
    return DeliveryPolicy(max_age_ms=config.max_age_ms, concurrency=config.concurrency, rate_per_s=config.rate_per_s)

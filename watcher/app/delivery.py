"""Wiring of delivery: the configured notifiers, on the shared HTTP session, behind one delivery worker."""

from __future__ import annotations

import aiohttp

from notifiers.protocol import Notifier, NotifierContext
from notifiers.registry import build_notifier, delivery_policy
from notifiers.worker import RECORD_WINDOW, DeliveryPolicy, DeliveryWorker
from watcher.app.config import Config
from watcher.core.clock import Clock
from watcher.core.storehealth import StoreHealth
from watcher.store.protocol import NamespacedState, Store


def build_notifiers(config: Config, store: Store, session: aiohttp.ClientSession, clock: Clock) -> dict[str, Notifier]:
    """Every configured notifier, each with its own durable state namespace."""
    return {
        name: build_notifier(name, settings, notifier_context(config, store, session, name), clock)
        for name, settings in config.notifiers.items()
    }


def notifier_context(config: Config, store: Store, session: aiohttp.ClientSession, name: str) -> NotifierContext:
    """What the notifier `name` may use: the session, its state rows, the status page and the rules resolved."""
    return NotifierContext(
        session,
        NamespacedState(store, f"notifier.{name}"),
        status_url=config.http.status_url(),
        incident_rules=frozenset(rule.resolves for rule in config.rules if rule.resolves is not None),
    )


def build_worker(
    config: Config,
    store: Store,
    session: aiohttp.ClientSession,
    clock: Clock,
    health: StoreHealth | None = None,
    *,
    record_window: int = RECORD_WINDOW,
) -> DeliveryWorker:
    """The delivery worker for a config's notifiers (`health`: shared with the poll cycle and /readyz). A replica's
    worker is also told what each heartbeat saw of the outbox (`DeliveryWorker.looked`, wired by the service):
    another replica's commit does not wake it (see `PostgresStore.listen`), so what a dead replica left is found
    by the heartbeat's look, every lease TTL / 3."""
    notifiers = build_notifiers(config, store, session, clock)
    policies = delivery_policies(config)
    return DeliveryWorker(store, notifiers, policies, clock=clock, health=health, record_window=record_window)


def delivery_policies(config: Config) -> dict[str, DeliveryPolicy]:
    """Each configured notifier's delivery limits."""
    return {name: delivery_policy(settings) for name, settings in config.notifiers.items()}

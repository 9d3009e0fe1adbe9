"""Keeping alive what a destination forgets: Alertmanager expires an alert that is not posted again, so a notifier
that opens such things re-sends what is still open, at its own interval.

This is not delivery (nothing comes from the outbox and no attempt is recorded): a refresh that fails is logged and
tried again at the next interval, while what it keeps alive outlives a few missed refreshes by design.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from notifiers.protocol import Notifier, SendError
from watcher.core.clock import Clock

log = logging.getLogger("benchwatch.delivery")


@runtime_checkable
class Refreshing(Protocol):
    """A notifier whose destination forgets what is not sent again: `refresh()` re-sends what is still open."""

    name: str
    refresh_interval_ms: int

    async def refresh(self) -> int:
        """Re-send everything still open; returns how many were re-sent. Raises `SendError` (or a store error)."""
        ...


class Refresher:
    """Calls `refresh()` on each notifier that keeps something alive, each at its own interval: the first time at
    once (after a restart, the destination may have expired things meanwhile), then every interval."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._next_ms: dict[str, int] = {}
        self._failing: set[str] = set()

    async def refresh_due(self, notifiers: Mapping[str, Notifier]) -> int:
        """Refresh every notifier whose interval has passed, side by side; one failing never stops the others.
        Returns how many things were re-sent."""
        now_ms = self.clock.now_ms()
        due = [
            notifier
            for name, notifier in notifiers.items()
            if isinstance(notifier, Refreshing) and self._next_ms.get(name, now_ms) <= now_ms
        ]
        for notifier in due:
            self._next_ms[notifier.name] = now_ms + notifier.refresh_interval_ms
        counts = await asyncio.gather(*(self._refresh(notifier) for notifier in due))
        return sum(counts)

    async def _refresh(self, notifier: Refreshing) -> int:
        try:
            count = await notifier.refresh()
        except Exception as exc:  # logged once per outage: the next interval tries again
            if notifier.name not in self._failing:
                self._failing.add(notifier.name)
                log.warning("refreshing what notifier %s keeps open failed: %s", notifier.name, _one_line(exc))
            return 0
        if notifier.name in self._failing:
            self._failing.discard(notifier.name)
            log.warning("refreshing what notifier %s keeps open works again (%d re-sent)", notifier.name, count)
        return count


def _one_line(exc: Exception) -> str:
    """A `SendError` says what failed without secrets; anything else is named by its type only."""
    return str(exc) if isinstance(exc, SendError) else type(exc).__name__

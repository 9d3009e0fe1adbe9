"""A pacing rate limit on an injected clock: each start takes the next free slot, `1 / rate` apart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from watcher.core.clock import Clock

Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """At most `rate_per_s` starts per second, evenly spaced; `None` means no limit."""

    def __init__(self, rate_per_s: float | None, clock: Clock, sleep: Sleep) -> None:
        self._interval_ms = 1000 / rate_per_s if rate_per_s else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next_ms = 0.0

    async def wait_turn(self) -> None:
        """Return when this caller may start (at once when under the rate)."""
        if not self._interval_ms:
            return
        now = self._clock.now_ms()
        slot = max(now, self._next_ms)
        self._next_ms = slot + self._interval_ms
        if slot > now:
            await self._sleep((slot - now) / 1000)

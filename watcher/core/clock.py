"""Injected clocks: everything that reads time takes one, so tests move time instead of waiting for it."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time in milliseconds since the Unix epoch."""

    def now_ms(self) -> int:
        """The current time, in ms since the epoch."""
        ...


class SystemClock:
    """The real wall clock."""

    def now_ms(self) -> int:
        """The current time, in ms since the epoch."""
        return time.time_ns() // 1_000_000


class MonotonicClock:
    """Milliseconds of `time.monotonic()`: for pacing real load, immune to wall-clock jumps."""

    def now_ms(self) -> int:
        """Monotonic time in ms (not since the epoch)."""
        return time.monotonic_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to: for tests and replays."""

    def __init__(self, start_ms: int = 1_788_228_000_000) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        """The current time, in ms since the epoch."""
        return self._now_ms

    def advance(self, ms: int) -> int:
        """Move the clock forward by `ms` milliseconds; returns the new time."""
        if ms < 0:
            raise ValueError("a clock does not go backwards")
        self._now_ms += ms
        return self._now_ms

    def set(self, now_ms: int) -> None:
        """Jump to `now_ms` (never backwards)."""
        self.advance(now_ms - self._now_ms)


class ScaledClock:
    """Real time sped up by `speed`, starting at `start_ms`: the simulator's accelerated clock."""

    def __init__(self, start_ms: int | None = None, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._origin_ms = SystemClock().now_ms() if start_ms is None else start_ms
        self._origin_mono_ns = time.monotonic_ns()
        self.speed = speed

    def now_ms(self) -> int:
        """The accelerated time, in ms since the epoch."""
        elapsed_ms = (time.monotonic_ns() - self._origin_mono_ns) / 1_000_000
        return self._origin_ms + int(elapsed_ms * self.speed)

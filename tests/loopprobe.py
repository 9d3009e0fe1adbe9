"""A probe on the event loop: how often it is reached through `call_soon_threadsafe` — a byte written to its
self-pipe, read back, and a turn of the loop, each a wake-up a process at rest pays for."""

from __future__ import annotations

import asyncio
from typing import Any


class CountingThreadsafe:
    """Counts the loop's `call_soon_threadsafe` calls (the loop's own method still does the work)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.calls = 0
        self._loop = loop
        self._original = loop.call_soon_threadsafe

    def __enter__(self) -> CountingThreadsafe:
        def counted(*args: Any, **kwargs: Any) -> asyncio.Handle:
            self.calls += 1
            return self._original(*args, **kwargs)

        self._loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self._loop.call_soon_threadsafe  # the class's method again

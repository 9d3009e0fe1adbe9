"""Waiting in a test for something another task or process does: a condition looked at until a deadline, never a
sleep that guesses how long it takes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(condition: Callable[[], bool], deadline_s: float = 10.0) -> None:
    """Return once `condition()` holds; fail the test if it does not within `deadline_s` (looked at every 5 ms)."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)

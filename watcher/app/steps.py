"""The service's steps (a poll cycle, the rule timers, the lease heartbeat): one run at a time, each run whole.

APScheduler calls the steps, and its shutdown cancels the jobs still running. A step runs its body in a task of its
own, shielded from the caller: a cancelled caller stops waiting, but the run goes on to its end — a poll cycle or a
timer flush is never cut off between its requests and its commit. `stop` starts no new run and gives the one under
way a grace to end; only past it is the run cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Step(Generic[T]):
    """Runs `body` when called, after the run under way (if any) has ended; nothing once stopped."""

    def __init__(self, name: str, body: Callable[[], Awaitable[T]]) -> None:
        self.name = name
        self._body = body
        self._turn = asyncio.Lock()
        self._runs: set[asyncio.Task[T | None]] = set()
        self.stopped = False

    def __repr__(self) -> str:
        return f"Step({self.name!r})"

    @property
    def busy(self) -> bool:
        """A run, or an `exclusive` section, is under way."""
        return self._turn.locked()

    async def __call__(self) -> T | None:
        """Run the body once, whole, and return its result; None when the step is stopped."""
        run = asyncio.ensure_future(self._whole())
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)
        try:
            return await asyncio.shield(run)
        except asyncio.CancelledError:
            if self.stopped and run.cancelled():  # cut off by `stop` past its grace, which says so once
                return None
            raise

    async def _whole(self) -> T | None:
        async with self._turn:
            if self.stopped:
                return None
            return await self._body()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[bool]:
        """`async with step.exclusive() as open_:` no run of the step meanwhile (a reload swaps what a cycle uses
        between two cycles); `open_` is False once the step is stopped."""
        async with self._turn:
            yield not self.stopped

    async def stop(self, grace_s: float) -> bool:
        """Start no new run; wait up to `grace_s` for the runs under way, then cancel what is left. True when
        every run ended by itself."""
        self.stopped = True
        runs = set(self._runs)
        if not runs:
            return True
        _, unfinished = await asyncio.wait(runs, timeout=grace_s)
        for run in unfinished:
            run.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        return not unfinished

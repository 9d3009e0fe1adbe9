"""APScheduler's asyncio scheduler, its timer handing the due jobs over on the loop's own thread.

`AsyncIOScheduler`'s timer calls `wakeup`, which is written for any thread: it reaches the loop through
`call_soon_threadsafe` — a byte written to the loop's self-pipe, read back, and one more turn of the loop — at every
run of a job, though the timer already runs on the loop's thread. A watcher at rest runs its scheduler's jobs every
second; that hop was a tenth of what the scheduler costs each time (`docs/performance.md`, "Unchanged polls").
`wakeup` itself stays as it is for what calls it from elsewhere (adding a job, a pause, a shutdown).

APScheduler is pinned to 3.11.x (`pyproject.toml`); `_start_timer`, `_stop_timer` and `_process_jobs` are its
3.x scheduler's own steps, and `tests/test_scheduler.py` checks that jobs run on their intervals through them.
"""

from __future__ import annotations

from apscheduler.schedulers.asyncio import AsyncIOScheduler


class LoopScheduler(AsyncIOScheduler):  # type: ignore[misc]  # APScheduler 3 has no type hints
    """`AsyncIOScheduler` whose timer processes the due jobs directly (it fires on the loop's thread)."""

    def _start_timer(self, wait_seconds: float | None) -> None:
        self._stop_timer()
        if wait_seconds is not None:
            self._timeout = self._eventloop.call_later(wait_seconds, self._timer_due)

    def _timer_due(self) -> None:
        self._stop_timer()
        self._start_timer(self._process_jobs())

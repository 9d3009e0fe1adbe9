"""Catch-up: which jobs new to the watcher are told in full, and which are a starting point.

A job the watcher meets for the first time is either one that existed before this state store ever watched — a
starting point: its past is not news, and a fresh store must not flood a channel with every old job — or one that
was created after the store began watching and moved on before the watcher saw it (it failed between two discovery
passes, or ran while the watcher was stopped or an outage lasted): everything it did is told, `late`. The store
keeps the line between the two: the time its first pass began (the watermark). `watch.catch_up.max_age` bounds how
far back a job's creation may lie to be caught up on, so a watcher down for a week does not tell a week of jobs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from watcher.core.models import BenchmarkJobView
from watcher.core.records import StateRow
from watcher.store.protocol import Store

log = logging.getLogger("benchwatch.catchup")

WATERMARK = ("watch", "catch_up_since")  # state row: ms since the epoch when this store's first pass began


@dataclass
class CatchUp:
    """The catch-up policy of one store: `since_ms` is its watermark, None until `start` read (or wrote) it."""

    max_age_ms: int
    since_ms: int | None = None

    async def start(self, store: Store, now_ms: int) -> None:
        """Read the store's watermark; a fresh store (none yet) starts it now: what is there already is the
        starting point, what is created from now on is told in full however late it is first seen."""
        namespace, key = WATERMARK
        stored = await store.get_state(namespace, key)
        if stored is None:
            await store.commit(state_rows=[StateRow(namespace, key, str(now_ms))])
            stored = await store.get_state(namespace, key)  # replicas starting together: the one that won
            log.info("a fresh state store: jobs already there are a starting point; newer ones are told in full")
        self.since_ms = int(stored) if stored is not None else now_ms

    def applies(self, job: BenchmarkJobView, now_ms: int) -> bool:
        """Whether a job first seen now is caught up on: created after the watermark, within `max_age`."""
        if self.since_ms is None or self.max_age_ms <= 0:
            return False
        created_ms = job.create_time_ms
        return created_ms >= self.since_ms and now_ms - created_ms <= self.max_age_ms

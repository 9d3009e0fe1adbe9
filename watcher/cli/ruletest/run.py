"""Running one rule test: its snapshots through the config's rules on a manual clock that follows the recording,
by exactly the path `replay` (and so `run`) takes — the tracker, the router, the store (in memory), windows closing
at their own time — with the test's silences as runtime silences in the store, read as a running watcher reads
them."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from rules.silences import RuntimeSilence, matcher_json
from watcher.app.config import LoadedConfig
from watcher.cli.replay import replay_steps, tracker_for
from watcher.cli.ruletest.load import LoadedTest
from watcher.cli.ruletest.model import SilenceSpec
from watcher.core.clock import ManualClock
from watcher.core.decisions import Decision
from watcher.core.events import Event
from watcher.core.notification import Notification
from watcher.store import open_store

FOREVER_MS = 366 * 86_400_000  # a test's silence without an end lasts beyond any recording


@dataclass(frozen=True)
class Outcome:
    """What a test's run gave: the events seen, the notifications sent, every decision, in order."""

    events: Sequence[Event]
    notifications: Sequence[Notification]
    decisions: Sequence[Decision]


async def run_test(config: LoadedConfig, loaded: LoadedTest) -> Outcome:
    """Route the test's snapshots; nothing is sent, nothing is written outside memory."""
    test = loaded.test
    clock = ManualClock(loaded.snapshots[0].at_ms if loaded.snapshots else 0)
    until_ms = None if test.until is None else round(test.until.timestamp() * 1000)
    events: list[Event] = []
    notifications: list[Notification] = []
    decisions: list[Decision] = []
    async with open_store(":memory:") as store:
        tracker = tracker_for(store, config)
        silences = [_runtime(spec, index, clock.now_ms()) for index, spec in enumerate(test.silences)]
        if silences:
            await store.commit(state_rows=[silence.row() for silence in silences])
            await tracker.refresh_silences()
        async for step in replay_steps(tracker, loaded.snapshots, until_ms=until_ms):
            clock.set(max(step.at_ms, clock.now_ms()))
            events.extend(step.observation.events)
            notifications.extend(step.observation.notifications)
            decisions.extend(step.observation.decisions)
    return Outcome(events, notifications, decisions)


def _runtime(spec: SilenceSpec, index: int, now_ms: int) -> RuntimeSilence:
    """The test's silence as `silences add` would store it (its id derived from its place: the same every run)."""
    if spec.until is not None:
        ends_ms = round(spec.until.timestamp() * 1000)
    else:
        ends_ms = now_ms + (spec.for_ms if spec.for_ms is not None else FOREVER_MS)
    digest = hashlib.blake2b(f"test-silence-{index}".encode(), digest_size=6).hexdigest()
    return RuntimeSilence(
        id=f"sil_{digest}",
        match=matcher_json(spec.match),
        starts_ms=now_ms,
        ends_ms=max(ends_ms, now_ms + 1),
        created_ms=now_ms,
        comment=spec.comment,
        created_by=spec.created_by,
    )

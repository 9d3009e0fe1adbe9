"""The one code path from a snapshot to what must be told: diff → summary → rules → one atomic commit.

`benchwatch run`, `wait`, `replay` and `demo` all go through `JobTracker.observe`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Hashable, Sequence
from dataclasses import dataclass

from rules.engine import Router, RuleState, RuleStateChanges
from rules.silences import NAMESPACE as SILENCES
from rules.silences import load_runtime_silences
from watcher.core.decisions import Decision
from watcher.core.events import Event
from watcher.core.failureclass import DEFAULT_FAILURE_CLASSES, FailureClasses
from watcher.core.memory import JobMemory
from watcher.core.notification import Notification
from watcher.core.records import StateRow
from watcher.core.snapshot import Snapshot
from watcher.core.summary import JobSummary
from watcher.diff.infra import DEFAULT_INFRA_ALERT_RATIO, infra_degraded
from watcher.diff.jobs import DiffResult, created_memory, diff, unchanged
from watcher.diff.summary import running_scores, summarize
from watcher.pipeline.catchup import CatchUp
from watcher.pipeline.comparer import JobComparer
from watcher.pipeline.oddities import OnceOnlyWarnings
from watcher.pipeline.shared_rules import SharedRuleState
from watcher.pipeline.summaries import RecentSummaries
from watcher.store.protocol import Store

log = logging.getLogger("benchwatch.tracker")

DEFAULT_DASHBOARD_URL = "https://platform.runloop.ai"


@dataclass(frozen=True)
class Observation:
    """What a poll (or a timer) revealed: new events, the notifications now due, per-rule problems, and (after a
    poll) the job's memory as recorded."""

    events: tuple[Event, ...] = ()
    notifications: tuple[Notification, ...] = ()
    problems: tuple[str, ...] = ()
    memory: JobMemory | None = None
    dropped: tuple[str, ...] = ()  # notifications not sent: muted, inhibited, or already sent once
    decisions: tuple[Decision, ...] = ()  # what routing decided per event × rule: committed with the rest


class JobTracker:
    """Turns snapshots into events and notifications recorded in the store together.

    Memories and rule state (`SharedRuleState`) are cached after the first load; they change only once the store
    committed. When a commit fails, the rule state is reloaded from the store, so the next poll yields the same
    results again. The summaries of jobs routed are kept in `summaries` (the status page's).
    Only the memories of jobs still polled are cached: of a resting (finished) job the tracker keeps just its id,
    so thousands of finished jobs cost a set entry each — no memory to walk for the garbage collector, no RSS.
    """

    def __init__(
        self,
        store: Store,
        *,
        router: Router | None = None,
        dashboard_url: str = DEFAULT_DASHBOARD_URL,
        comparer: JobComparer | None = None,
        shared_rules: bool = False,
        catch_up: CatchUp | None = None,
        failure_classes: FailureClasses = DEFAULT_FAILURE_CLASSES,
        infra_alert_ratio: float | None = DEFAULT_INFRA_ALERT_RATIO,
        summaries: RecentSummaries | None = None,
    ) -> None:
        self.store = store
        self.router = router
        self.dashboard_url = dashboard_url
        self.failure_classes = failure_classes  # setup, timeout or agent: `failure_classes:`
        self.infra_alert_ratio = infra_alert_ratio  # job.infra_degraded over this share of setup failures
        self.comparer = comparer  # compares a job that completes with its baseline (`baseline:`)
        self.catch_up = catch_up  # which jobs new to the watcher are told in full (the service's; None: none)
        # Replicas share the rule state in the store: brought up to date before routing or flushing.
        self.rules = SharedRuleState(store, shared=shared_rules)
        self.summaries = summaries if summaries is not None else RecentSummaries()
        self._warnings = OnceOnlyWarnings()
        self._memories: dict[str, JobMemory] = {}  # jobs still polled
        self._resting: set[str] = set()  # jobs no longer polled: their memories are in the store only
        self._taken_over: set[str] = set()  # jobs taken over from another replica, not yet polled here
        # A job's first sighting whose commit failed: its memory and events, for the next poll to diff from and
        # record with its own. Diffed from nothing again, that poll would take the failures since for the state
        # the job was found in — told never (issue 29: scenario.failed lost while the store was starved).
        self._unrecorded_first: dict[str, tuple[JobMemory, tuple[Event, ...]]] = {}
        self._seen: dict[str, dict[str, frozenset[int]]] = {}  # job id → run id → latest attempts last diffed
        self._silences_mark: Hashable | None = None  # the store's mark at the last reading of the runtime silences

    async def observe(self, snapshot: Snapshot) -> Observation:
        """Diff `snapshot` against the job's memory, route its events, record it all, and return it."""
        job_id = snapshot.job.id
        memory = self._memories.get(job_id)
        if memory is None:
            memory = await self.store.load_memory(job_id)
        first = self._unrecorded_first.pop(job_id, None)
        if memory is not None:  # recorded meanwhile (by another replica): the store's memory is the truth
            first = None
        basis = first[0] if first else memory  # a first sighting not recorded yet is diffed on from, not again
        late = basis is None and self.catch_up is not None and self.catch_up.applies(snapshot.job, snapshot.at_ms)
        result = diff(basis, snapshot, self.failure_classes, catch_up=late)
        for warning in result.warnings:
            self._warnings.warn(warning)
        degraded = infra_degraded(
            created_memory(snapshot) if late else basis, snapshot, self.failure_classes, self.infra_alert_ratio
        )
        if degraded is not None and late:
            degraded = degraded.model_copy(update={"late": True})
        told = (*(first[1] if first else ()), *result.events, *((degraded,) if degraded is not None else ()))
        compared, kept = (
            await self.comparer.after_poll(snapshot, basis, result.memory, late=late) if self.comparer else ((), [])
        )
        events = (*told, *compared)
        # Summarised before the rule-state turn, which it does not need: replicas hold the turn's lock one at a time,
        # and a large job's summary (its runs' scores so far) was the longest part of it.
        summary = self._summary(snapshot, result.memory) if events and self.router is not None else None
        try:
            async with self._rule_state(exclusive=bool(events)) as state:
                observation = await self._route_and_commit(
                    snapshot, memory, result, events, kept, state=state, summary=summary
                )
        except BaseException:
            if memory is None:  # nothing of the job recorded yet: what was seen so far waits for the next poll
                self._unrecorded_first[job_id] = (result.memory, told)
            raise
        self._remember(result.memory)
        if snapshot.scenario_runs and not result.memory.finished:
            self._seen[job_id] = {run_id: runs.seen for run_id, runs in snapshot.scenario_runs.items()}
        else:
            self._seen.pop(job_id, None)
        _log_problems(observation.problems, observation.dropped)
        return observation

    async def _route_and_commit(
        self,
        snapshot: Snapshot,
        memory: JobMemory | None,
        result: DiffResult,
        events: tuple[Event, ...],
        kept: Sequence[StateRow],
        *,
        state: RuleState | None,
        summary: JobSummary | None,
    ) -> Observation:
        observation = Observation(events, memory=result.memory)
        if summary is not None and self.router is not None and state is not None:  # a summary: events to route
            self.summaries.keep(summary)
            routed = self.router.route(state, events, summary, snapshot.at_ms)
            observation = Observation(
                events, routed.notifications, routed.problems, result.memory, routed.dropped, routed.decisions
            )
        changes = state.take_changes() if state is not None else None
        job_id = snapshot.job.id
        taken_over = job_id in self._taken_over
        if events or changes or kept or memory is None or taken_over or _material(result.memory) != _material(memory):
            await self._commit(result.memory, observation, changes, kept)
            self._taken_over.discard(job_id)
        return observation

    async def observe_unchanged(self, job_id: str, at_ms: int) -> None:
        """A poll whose bytes hashed as last time's: no parse, no diff; written only if bookkeeping changed (or
        the job was just taken over: its new holder's first poll is on record)."""
        memory = self._memories[job_id]
        updated = unchanged(memory, at_ms)
        # `unchanged` moves the time last seen and, once finished, the polls since: only the latter is material
        if job_id in self._taken_over or updated.polls_after_finish != memory.polls_after_finish:
            await self._commit(updated, Observation(), None)
            self._taken_over.discard(job_id)
        self._remember(updated)

    async def taken_over_memory(self, job_id: str) -> JobMemory | None:
        """The memory of a job just taken over from another replica, as that replica last committed it (cached
        from now on), so that its first poll here can tell unchanged bytes by their hash; None otherwise."""
        if job_id not in self._taken_over or job_id in self._memories:
            return self._memories.get(job_id)
        memory = await self.store.load_memory(job_id)
        if memory is not None:
            self._remember(memory)
        return self._memories.get(job_id)

    async def record(self, events: Sequence[Event], memory: JobMemory | None, now_ms: int) -> Observation:
        """Route and record events that time revealed (a stall, a vanishing, an API outage), with the memory
        of the job they change, if any; like `observe`, in one commit."""
        async with self._rule_state(exclusive=bool(events)) as state:
            observation = Observation(tuple(events))
            if events and self.router is not None and state is not None:
                routed = self.router.route(state, events, None, now_ms)
                observation = Observation(
                    tuple(events),
                    routed.notifications,
                    routed.problems,
                    dropped=routed.dropped,
                    decisions=routed.decisions,
                )
            changes = state.take_changes() if state is not None else None
            await self._commit(memory, observation, changes)
        if memory is not None:
            self._remember(memory)
        _log_problems(observation.problems, observation.dropped)
        return observation

    def add_blind(self, job_id: str, blind_ms: int) -> None:
        """Count `blind_ms` during which the job could not be seen (see `JobMemory.blind_ms`); it is written with
        the job's next commit."""
        memory = self._memories.get(job_id)
        if memory is not None and blind_ms > 0:
            self._memories[job_id] = memory.model_copy(update={"blind_ms": memory.blind_ms + blind_ms})

    async def load_memories(self) -> int:
        """Learn every job the store remembers (a restart resumes from these); returns how many."""
        memories = await self.store.load_memories()
        for memory in memories.values():
            self._remember(memory)
        return len(memories)

    def seen_scenarios(self, job_id: str) -> dict[str, frozenset[int]]:
        """Per followed run, the latest scenario attempts the job's memory already reflects (what the next
        snapshot is compared with); empty after a restart, when the next snapshot is diffed in full."""
        return self._seen.get(job_id, {}) if job_id in self._memories else {}

    def knows(self, job_id: str) -> bool:
        """Whether the tracker has a memory of this job."""
        return job_id in self._memories or job_id in self._resting

    def live(self) -> list[JobMemory]:
        """The memories of jobs still polled (not resting): what a cycle iterates, however many jobs rest."""
        return [self._memories[job_id] for job_id in sorted(self._memories)]

    async def refresh_silences(self) -> None:
        """Read the runtime silences again (any replica or the CLI may have changed them) for the next events —
        unless the store's mark tells that none was committed since the last reading (`Store.write_mark`: on
        SQLite two `stat` calls instead of a read on the store's thread, at every cycle of a watcher at rest; on
        PostgreSQL what the listener heard, instead of a transaction a cycle of every replica)."""
        if self.router is None:
            return
        mark = self.store.write_mark(SILENCES)  # taken before the reading: a commit meanwhile moves the next one
        if mark is not None and mark == self._silences_mark:
            return
        self.router.use_runtime_silences(await load_runtime_silences(self.store))
        self._silences_mark = mark

    async def use_router(self, router: Router) -> None:
        """Route with `router` from now on (a config reload): open group windows and incidents carry over where
        their rule still exists; those of removed rules are dropped, in one commit."""
        previous, self.router = self.router, router
        router.use_runtime_silences(previous.runtime_silences if previous is not None else ())
        async with self._rule_state(exclusive=True) as state:
            if state is None:
                return
            names = {rule.name for rule in router.rules}
            for group_id in [gid for gid in state.groups if gid[0] not in names]:
                state.drop_group(group_id)
            for incident in [inc for inc in state.incidents if inc[0] not in names]:
                state.close_incident(incident)
            changes = state.take_changes()
            if changes:
                log.info("reload: dropped the open windows and incidents of removed rules")
                await self._commit(None, Observation(), changes)

    def _remember(self, memory: JobMemory) -> None:
        if memory.resting:
            self._memories.pop(memory.job_id, None)
            self._seen.pop(memory.job_id, None)
            self._resting.add(memory.job_id)
        else:
            self._memories[memory.job_id] = memory
            self._resting.discard(memory.job_id)

    async def flush_due(self, now_ms: int) -> Observation:
        """Close the group windows due by `now_ms`: their notifications, recorded in the outbox."""
        async with self._rule_state(exclusive=True) as state:
            if self.router is None or state is None:
                return Observation()
            problems: list[str] = []
            dropped: list[str] = []
            decisions: list[Decision] = []
            notifications = tuple(self.router.flush_due(state, now_ms, problems, dropped, decisions))
            changes = state.take_changes()
            observation = Observation(
                (), notifications, tuple(problems), dropped=tuple(dropped), decisions=tuple(decisions)
            )
            if notifications or changes:
                await self._commit(None, observation, changes)
        _log_problems(observation.problems, observation.dropped)
        return observation

    @contextlib.asynccontextmanager
    async def _rule_state(self, *, exclusive: bool) -> AsyncIterator[RuleState | None]:
        """The rule state to route with (None without a router); replicas, when `exclusive` (events to route,
        windows to flush): theirs alone until the commit inside is done."""
        if self.router is None:
            yield None
            return
        async with self.rules.turn(exclusive=exclusive) as state:
            yield state

    def forget(self, job_id: str) -> None:
        """Drop what is cached of a job (another replica polled it meanwhile): its next poll reads the store, and
        writes the memory back even if nothing changed — the store then shows the job's new holder at work."""
        self._taken_over.add(job_id)
        self._unrecorded_first.pop(job_id, None)  # its holder now diffs from what the store holds
        self._memories.pop(job_id, None)
        self._resting.discard(job_id)
        self._seen.pop(job_id, None)

    def rested_elsewhere(self, job_id: str) -> None:
        """Another replica saw the job come to rest: it is not polled here again (its memory is in the store)."""
        self._taken_over.discard(job_id)
        self._memories.pop(job_id, None)
        self._seen.pop(job_id, None)
        self._resting.add(job_id)

    def resting(self, job_id: str) -> bool:
        """Whether the job is known to have come to rest (no longer polled)."""
        return job_id in self._resting

    def next_due_ms(self) -> int | None:
        """When the next group window closes (None when none is open, or before the first poll)."""
        state = self.rules.cached
        return Router.next_due_ms(state) if state is not None else None

    def memory(self, job_id: str) -> JobMemory | None:
        """The memory of a job still polled (None for a resting job: its memory is in the store)."""
        return self._memories.get(job_id)

    async def _commit(
        self,
        memory: JobMemory | None,
        observation: Observation,
        changes: RuleStateChanges | None,
        kept: Sequence[StateRow] = (),
    ) -> None:
        async with self.rules.recording(changes) as rows:
            await self.store.commit(
                memory=memory,
                events=observation.events,
                state_rows=[*rows, *kept],
                notifications=observation.notifications,
                decisions=observation.decisions,
            )

    def _summary(self, snapshot: Snapshot, memory: JobMemory) -> JobSummary:
        run_counts = {run_id: memo.counts for run_id, memo in memory.runs.items() if memo.counts is not None}
        run_scores = running_scores(snapshot.scenario_runs)
        return summarize(
            snapshot.job, memory.counters, run_counts, self.dashboard_url, run_scores, classes=self.failure_classes
        )


def _material(memory: JobMemory) -> JobMemory:
    """The memory without what changes on every poll: not worth a write by itself."""
    return memory.model_copy(update={"last_seen_ms": 0, "fingerprint": None})


def _log_problems(problems: tuple[str, ...], dropped: tuple[str, ...] = ()) -> None:
    for problem in problems:
        log.warning("%s", problem)
    for line in dropped:
        log.info("not sent: %s", line)

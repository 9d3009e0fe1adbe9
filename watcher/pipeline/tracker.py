"""The one code path from a snapshot to what must be told: diff → summary → rules → one atomic commit.

`benchwatch run`, `wait`, `replay` and `demo` all go through `JobTracker.observe`.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

from rules.engine import Router, RuleState, RuleStateChanges
from rules.persist import (
    LOG,
    LOG_KEPT,
    VERSION,
    VERSION_KEY,
    apply_row,
    load_rule_state,
    log_key,
    log_row,
    logged_rows,
    rows_for,
)
from rules.silences import load_runtime_silences
from watcher.core.decisions import Decision
from watcher.core.events import Event
from watcher.core.memory import JobMemory
from watcher.core.notification import Notification
from watcher.core.records import StateRow
from watcher.core.snapshot import Snapshot
from watcher.core.summary import JobSummary
from watcher.diff.jobs import DiffResult, diff, unchanged
from watcher.diff.summary import summarize
from watcher.pipeline.comparer import JobComparer
from watcher.store.protocol import Store

log = logging.getLogger("benchwatch.tracker")

DEFAULT_DASHBOARD_URL = "https://platform.runloop.ai"
SUMMARIES_KEPT = 500  # the status page shows these jobs in full (agents, failures), others by their counters
_REMEMBERED_WARNINGS = 10_000


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

    Memories and rule state are cached after the first load; they change only once the store committed. When a
    commit fails, the rule state is reloaded from the store, so the next poll yields the same results again.
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
    ) -> None:
        self.store = store
        self.router = router
        self.dashboard_url = dashboard_url
        self.comparer = comparer  # compares a job that completes with its baseline (`baseline:`)
        # Replicas share the rule state in the store: read it afresh before routing or flushing, never cached.
        self.shared_rules = shared_rules
        self._memories: dict[str, JobMemory] = {}  # jobs still polled
        self._resting: set[str] = set()  # jobs no longer polled: their memories are in the store only
        self._taken_over: set[str] = set()  # jobs taken over from another replica, not yet polled here
        self._seen: dict[str, dict[str, frozenset[int]]] = {}  # job id → run id → latest attempts last diffed
        self._rule_state: RuleState | None = None
        self._rule_version: int | None = None  # replicas: the version of the rule state in `_rule_state`
        self._section_version: int | None = None  # replicas, inside the rule-state lock: the version in the store
        self._summaries: OrderedDict[str, JobSummary] = OrderedDict()  # least recently changed first
        self._warned: set[str] = set()

    async def observe(self, snapshot: Snapshot) -> Observation:
        """Diff `snapshot` against the job's memory, route its events, record it all, and return it."""
        job_id = snapshot.job.id
        memory = self._memories.get(job_id)
        if memory is None:
            memory = await self.store.load_memory(job_id)
        result = diff(memory, snapshot)
        for warning in result.warnings:
            self._warn_once(warning)
        compared, kept = await self.comparer.after_poll(snapshot, memory, result.memory) if self.comparer else ((), [])
        events = (*result.events, *compared)
        async with self._rules_exclusive(bool(events)):
            observation = await self._route_and_commit(snapshot, memory, result, events, kept)
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
    ) -> Observation:
        observation = Observation(events, memory=result.memory)
        state = await self._state()
        if events and self.router is not None and state is not None:
            summary = self._summary(snapshot, result.memory)
            self._keep_summary(summary)
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
        if job_id in self._taken_over or _material(updated) != _material(memory):
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
        async with self._rules_exclusive(bool(events)):
            state = await self._state()
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

    def _warn_once(self, warning: str) -> None:
        """Log a diff's warning the first time only: the same odd data comes back on every poll."""
        if warning in self._warned:
            return
        if len(self._warned) >= _REMEMBERED_WARNINGS:
            self._warned.clear()
        self._warned.add(warning)
        log.warning("%s", warning)

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

    def summaries(self) -> Mapping[str, JobSummary]:
        """The latest summary of the last SUMMARIES_KEPT jobs whose polls revealed events since start, by job id."""
        return self._summaries

    def _keep_summary(self, summary: JobSummary) -> None:
        self._summaries[summary.job_id] = summary
        self._summaries.move_to_end(summary.job_id)
        if len(self._summaries) > SUMMARIES_KEPT:  # bounded, however many jobs: the page of thousands shows counters
            self._summaries.popitem(last=False)

    async def refresh_silences(self) -> None:
        """Read the runtime silences again (any replica or the CLI may have changed them) for the next events."""
        if self.router is not None:
            self.router.use_runtime_silences(await load_runtime_silences(self.store))

    async def use_router(self, router: Router) -> None:
        """Route with `router` from now on (a config reload): open group windows and incidents carry over where
        their rule still exists; those of removed rules are dropped, in one commit."""
        previous, self.router = self.router, router
        router.use_runtime_silences(previous.runtime_silences if previous is not None else ())
        async with self._rules_exclusive(True):
            state = await self._state()
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
        async with self._rules_exclusive(True):
            state = await self._state()
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
    async def _rules_exclusive(self, needed: bool) -> AsyncIterator[None]:
        """Replicas: the rule state is read, changed and committed by one replica at a time, and read afresh
        inside — two replicas routing into one group window never write it without each other's events."""
        if not (needed and self.shared_rules and self.router is not None):
            yield
            return
        async with self.store.rules_section():
            version = int(await self.store.get_state(VERSION, VERSION_KEY) or "0")
            await self._catch_up(version)
            self._rule_version = self._section_version = version
            try:
                yield
            finally:
                self._section_version = None

    async def _catch_up(self, version: int) -> None:
        """Bring the cached rule state to the store's `version` (inside the rule-state lock): the rows the other
        replicas changed meanwhile, from the log; or, too far behind or with nothing cached, the whole state."""
        known, state = self._rule_version, self._rule_state
        if state is None or known is None or version == known:
            if known != version:
                self._rule_state = None  # read whole by `_state`, at this version
            return
        if 0 < version - known <= LOG_KEPT:
            entries = [await self.store.get_state(LOG, log_key(v)) for v in range(known + 1, version + 1)]
            if all(entry is not None for entry in entries):
                for entry in entries:
                    for row in logged_rows(entry or "[]"):
                        apply_row(state, row)
                return
        self._rule_state = None

    def forget(self, job_id: str) -> None:
        """Drop what is cached of a job (another replica polled it meanwhile): its next poll reads the store, and
        writes the memory back even if nothing changed — the store then shows the job's new holder at work."""
        self._taken_over.add(job_id)
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
        return Router.next_due_ms(self._rule_state) if self._rule_state is not None else None

    def memory(self, job_id: str) -> JobMemory | None:
        """The memory of a job still polled (None for a resting job: its memory is in the store)."""
        return self._memories.get(job_id)

    async def _state(self) -> RuleState | None:
        if self.router is not None and self._rule_state is None:
            self._rule_state = await load_rule_state(self.store)
        return self._rule_state

    async def _commit(
        self,
        memory: JobMemory | None,
        observation: Observation,
        changes: RuleStateChanges | None,
        kept: Sequence[StateRow] = (),
    ) -> None:
        rows = rows_for(changes) if changes is not None else []
        version = self._section_version
        if version is not None and rows:  # inside the rule-state lock: nobody else moves the version meanwhile
            version += 1
            log = [log_row(version, rows), StateRow(LOG, log_key(version - LOG_KEPT), None)]
            rows = [*rows, StateRow(VERSION, VERSION_KEY, str(version)), *log]
        try:
            await self.store.commit(
                memory=memory,
                events=observation.events,
                state_rows=[*rows, *kept],
                notifications=observation.notifications,
                decisions=observation.decisions,
            )
        except BaseException:
            self._rule_state = None  # what the store holds is the truth: reload it on the next poll
            self._rule_version = None
            raise
        if version is not None:
            self._rule_version = self._section_version = version

    def _summary(self, snapshot: Snapshot, memory: JobMemory) -> JobSummary:
        run_counts = {run_id: memo.counts for run_id, memo in memory.runs.items() if memo.counts is not None}
        return summarize(snapshot.job, memory.counters, run_counts, self.dashboard_url)


def _material(memory: JobMemory) -> JobMemory:
    """The memory without what changes on every poll: not worth a write by itself."""
    return memory.model_copy(update={"last_seen_ms": 0, "fingerprint": None})


def _log_problems(problems: tuple[str, ...], dropped: tuple[str, ...] = ()) -> None:
    for problem in problems:
        log.warning("%s", problem)
    for line in dropped:
        log.info("not sent: %s", line)

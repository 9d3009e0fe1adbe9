"""One poll cycle: find the jobs to poll, refresh them (from list pages where they are there anyway), diff,
route and record them, then the timed events — each job isolated from the others' failures."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import xxhash
from pydantic import ValidationError

from watcher.api.client import RunloopClient, parse_body
from watcher.api.decode import decode_pages
from watcher.api.errors import MalformedResponseError, NotFoundError, RunloopApiError, SchemaError, TransientApiError
from watcher.api.health import ApiHealth
from watcher.api.listing import rejected_view
from watcher.api.poll import MALFORMED_PAGES, runs_to_follow
from watcher.app.config import WatchSection
from watcher.app.replicas import LeaseGate
from watcher.core.clock import Clock
from watcher.core.eventlines import event_line
from watcher.core.events import Event, JobProgress
from watcher.core.failures import Reason
from watcher.core.models import BenchmarkJobView
from watcher.core.ratelimit import Sleep
from watcher.core.records import StateRow
from watcher.core.scenario_runs import RunScenarios
from watcher.core.snapshot import Snapshot
from watcher.core.storehealth import StoreHealth
from watcher.diff.timers import stall, vanish
from watcher.pipeline.tracker import JobTracker, Observation
from watcher.store.errors import BatchRolledBackError, LeaseLostError, StoreError, StoreWriteError

log = logging.getLogger("benchwatch.poll")
event_log = logging.getLogger("benchwatch.events")

NOT_FOUND_LIMIT = 2  # a job answering 404 this many times in a row has vanished
FIRST_PAGE_SIZE = 1000  # the first discovery pass reads far back
# Later passes only need what is newer than the newest known job: usually the first job listed is known and the
# second older, so one page of a few jobs ends the pass. A page of 50 cost every replica, every cycle, 155 KB of job
# views on `many` (a fifth of what `small`'s process spent at rest went to reading it); more new jobs than a page
# holds are read on the next pages.
LATER_PAGE_SIZE = 5
NEW_JOBS_BATCH = 50  # new jobs polled together in a later pass (the first pass: a page at a time)
PROBE_BYTES = 64 * 1024  # the write that tells whether a store that could not write can again
# Jobs whose polls start together in a spread cycle. Waking from idle costs a poll about as much as its own work
# (on the `unchanged` benchmark a bare GET + hash started every 64 ms cost 2× the same requests back to back), so a
# spread wakes once per slot of this many jobs, not once per job; 16 changed jobs are ~40 ms of work on `many`.
SLOT_JOBS = 16


@dataclass
class CycleReport:
    """What one cycle did, for metrics and logs."""

    polled: int = 0
    failed: int = 0
    events: list[Event] = field(default_factory=list)
    notifications: int = 0
    api_errors: list[RunloopApiError] = field(default_factory=list)
    poll_durations: list[tuple[float, bool]] = field(default_factory=list)  # (seconds, ok) per job polled

    def add(self, other: CycleReport) -> None:
        """Count what `other` (one job's poll) did in this report too."""
        self.polled += other.polled
        self.failed += other.failed
        self.events.extend(other.events)
        self.notifications += other.notifications
        self.api_errors.extend(other.api_errors)
        self.poll_durations.extend(other.poll_durations)


def _fingerprint(job_body: bytes, pages: dict[str, list[bytes]]) -> str:
    """A hash of everything a snapshot was built from: equal bytes, equal snapshot, nothing to diff."""
    digest = xxhash.xxh3_128(job_body)  # ~0.1 ms/MB: a few % of parsing the same bytes
    for run_id in sorted(pages):
        digest.update(run_id.encode())
        for page in pages[run_id]:
            digest.update(page)
    return digest.hexdigest()


class PollCycle:
    """Polls every watched job once; `on_notifications` is called as soon as a commit put some in the outbox."""

    def __init__(
        self,
        *,
        watch: WatchSection,
        client: RunloopClient,
        tracker: JobTracker,
        clock: Clock,
        health: ApiHealth,
        on_notifications: Callable[[], None],
        sleep: Sleep = asyncio.sleep,
        on_snapshot: Callable[[Snapshot], object] | None = None,
        gate: LeaseGate | None = None,
        store_health: StoreHealth | None = None,
        slot_jobs: int = SLOT_JOBS,
    ) -> None:
        self.watch = watch
        self.slot_jobs = slot_jobs
        self.client = client
        self.tracker = tracker
        self.clock = clock
        self.health = health
        self.on_notifications = on_notifications
        self._not_found: dict[str, int] = {}
        self._discovered_once = False
        # Later discovery passes stop at this job creation time too: every job listed at or after it was settled
        # by an earlier pass (known, or not matching `discover.name`). Without it, a pattern that matches none of
        # the newest jobs read back through all of them, 5 a page, to the first known job (or the age cutoff),
        # every cycle.
        self._listed_from_ms: int | None = None
        self._polling = asyncio.Semaphore(watch.max_concurrent_requests)
        self._health_events: list[Event] = []
        self._sleep = sleep
        self._on_snapshot = on_snapshot  # `run --record`: each changed snapshot, before the diff sees it
        self.gate = gate  # replicas: only the jobs this one holds a lease on are polled
        self.store_health = store_health or StoreHealth()
        self._seeing: set[str] = set()  # jobs whose last poll in this process succeeded
        self._malformed: set[str] = set()  # jobs whose data was reported malformed (once, until it is fine again)
        self._malformed_runs: set[str] = set()  # the same for followed runs' scenario-run pages
        # Polls still running: a slow one goes on past its cycle's end (within its own deadline) while the next
        # cycles poll every other job; what it does is counted in the cycle after it ends (`_late`).
        self._running: dict[str, asyncio.Task[CycleReport]] = {}
        self._late: list[CycleReport] = []
        self._outlived: set[asyncio.Task[CycleReport]] = set()
        self._wait_until: float | None = None  # the loop time past which a cycle no longer waits for its polls
        self._recording_failed = False  # a poll could not be recorded (the store away): said once until one is

    def use_watch(self, watch: WatchSection) -> None:
        """Watch what `watch` says from the next cycle on (a reload); a changed discovery pattern reads the list
        far back again, as a first pass does. Concurrency and rate stay as they were built."""
        if watch.discover != self.watch.discover:
            self._discovered_once = False
        self.watch = watch

    def targets(self) -> list[str]:
        """The jobs to poll: the configured ones and every known one that is not resting, in a stable order."""
        live = {memory.job_id for memory in self.tracker.live()}
        explicit = {job_id for job_id in self.watch.jobs if not self.tracker.knows(job_id) or job_id in live}
        return sorted(live | explicit)

    async def run(self, *, spread_s: float = 0.0, wait_s: float | None = None) -> CycleReport:
        """One cycle; never raises for one job's trouble. With `spread_s`, the known jobs' polls start evenly
        over that many seconds, each at the same offset every cycle (see `_poll_spread`). With `wait_s`, the cycle
        ends after that many seconds even if a poll is still running: that poll goes on (within
        `watch.poll_timeout`), its job is skipped by the cycles meanwhile, and no other job waits for it."""
        report = CycleReport()
        for late in self._late:
            report.add(late)
        self._late.clear()
        started_ms = self.clock.now_ms()
        loop_now = asyncio.get_running_loop().time()
        self._wait_until = None if wait_s is None else loop_now + wait_s
        if not await self._store_writable():
            return report  # nothing could be recorded: poll nothing, so nothing is polled twice or told late
        discovered = await self._discover(report)
        targets = [job_id for job_id in self.targets() if job_id not in discovered]
        fresh: list[str] = []
        if self.gate is not None:  # also the jobs of a replica that died: this one holds them now
            targets = sorted(await self.gate.admit(targets) - discovered)
            # Taken over: they have waited a lease TTL already, so they are polled at once, not in a slot later.
            fresh = sorted(self.gate.take_fresh() & set(targets))
            targets = [job_id for job_id in targets if job_id not in fresh]
        polls = [self._start(job_id, None) for job_id in fresh]
        if spread_s > 0 and len(targets) > self.slot_jobs:
            polls += await self._poll_spread(targets, started_ms, spread_s)
        else:
            polls += [self._start(job_id, None) for job_id in targets]
        await self._wait_for(polls, report)
        try:
            await self._timed(report)
        except StoreWriteError as exc:
            self._store_failed(exc)
        except StoreError as exc:  # the database away, or the section it shared rolled back: nothing of it recorded
            log.info("the stalls and the API's health were not recorded (%s); again next cycle", exc)
        return report

    def start_taken_over(self) -> int:
        """Replicas: start now the polls of the jobs the heartbeat has just taken over from a dead replica — between
        cycles or in the middle of one (its spread, or its wait for the last polls) — without waiting for them:
        they are counted in the next cycle, as polls that outlive theirs are. Returns how many were started.

        Started only between cycles, they waited for the cycle under way to end when the heartbeat came during one
        (90 % of the time with polls spread over 0.9 of the interval): up to a poll interval on top of the TTL."""
        if self.gate is None or not self.store_health.writable:
            return 0
        started = [self._start(job_id, None) for job_id in sorted(self.gate.take_fresh() & self.gate.held)]
        tasks = [task for task in started if task is not None]
        self._outlived.update(tasks)
        return len(tasks)

    async def _store_writable(self) -> bool:
        """While the store cannot write, each cycle only tries one probe write; True once it can write again.

        The probe writes 64 KB and deletes it in the same transaction: it leaves nothing behind, yet needs fresh
        space as a poll's commit does — a few bytes would still fit in a page's slack on a full disk."""
        if self.store_health.writable:
            return True
        probe = [StateRow("benchwatch", "write_probe", "x" * PROBE_BYTES), StateRow("benchwatch", "write_probe", None)]
        try:
            await self.tracker.store.commit(state_rows=probe)
        except StoreError as exc:  # cannot write, or (PostgreSQL) the database is away: the next cycle probes again
            self._store_failed(exc)
            return False
        down_ms = self.store_health.succeeded(self.clock.now_ms())
        log.warning("the state store writes again after %.0fs; polling resumes", (down_ms or 0) / 1000)
        return True

    def _store_failed(self, exc: StoreError) -> None:
        if self.store_health.failed(self.clock.now_ms(), str(exc)):
            log.error("the state store cannot write (%s): polls are held until it can (logged once a minute)", exc)

    async def _poll_spread(
        self, targets: list[str], started_ms: int, spread_s: float
    ) -> list[asyncio.Task[CycleReport] | None]:
        """Start the polls in slots of `slot_jobs` jobs, evenly over the spread from the cycle's start, in the
        stable order of `targets`; returns them, started (the cycle waits for them all at once).

        A job is then polled once per interval at the same phase, so a change waits at most an interval for its
        poll — however many other jobs changed at the same moment: their work is spread over the cycle instead of
        queued at its start, and the API sees a steady rate instead of one burst. A slot holds a few jobs rather
        than one: the event loop wakes from idle once per slot, not once per job (see SLOT_JOBS). The offsets count
        from the cycle's start, not from the end of discovery: a slow discovery pass delays only the slots it
        overran, and the cycle still ends within the spread."""
        slots = [targets[first : first + self.slot_jobs] for first in range(0, len(targets), self.slot_jobs)]
        spread_ms = spread_s * 1000
        step_ms = spread_ms / len(slots)
        polls: list[asyncio.Task[CycleReport] | None] = []
        for index, slot in enumerate(slots):
            # Capped: a wall clock stepped back must not hold a poll for longer than the spread.
            wait_ms = min(started_ms + index * step_ms - self.clock.now_ms(), spread_ms)
            if wait_ms > 0:
                await self._sleep(wait_ms / 1000)
            polls += [self._start(job_id, None) for job_id in slot]
        return polls

    async def _discover(self, report: CycleReport) -> set[str]:
        """Poll new matching jobs, from the list newest first, paged only as far as needed; returns their ids.

        The first pass pages back to the age cutoff (or `max_jobs`); later passes stop at the first job already
        known, or at the newest job an earlier pass read (`_mark_listed`), since every older one was seen before.
        Known jobs are polled on their own, where an unchanged job costs a hash of its bytes, and a resting
        (finished) one costs nothing at all. New jobs are polled a page at a time, so a first pass over thousands
        of jobs never holds them all at once.
        """
        discover = self.watch.discover
        if discover is None:
            return set()
        first_pass = not self._discovered_once
        cutoff_ms = None if discover.created_within_ms is None else self.clock.now_ms() - discover.created_within_ms
        page_size = min(discover.max_jobs, FIRST_PAGE_SIZE if first_pass else LATER_PAGE_SIZE)
        batch_size = page_size if first_pass else NEW_JOBS_BATCH
        batch: list[BenchmarkJobView] = []
        discovered: set[str] = set()
        listed_from_ms = None if first_pass else self._listed_from_ms
        newest_ms = 0  # of the jobs this pass read, not counting the one it stopped at
        rejected_before = self.client.rejects.seen
        matched: dict[str, int] = {}  # new jobs matching the pattern: their creation times
        try:
            seen, known_from_ms = 0, None
            # Closed here, not by the collector: an abandoned generator costs a task and a wake-up of the loop.
            async with contextlib.aclosing(self.client.iter_listed(page_size=page_size)) as listing:
                async for listed in listing:
                    seen += 1
                    if self._known(listed.id) and not first_pass and known_from_ms is None:
                        known_from_ms = listed.create_time_ms  # jobs created in that same ms may still follow: read on
                    older = [limit for limit in (cutoff_ms, known_from_ms, listed_from_ms) if limit is not None]
                    if any(listed.create_time_ms < limit for limit in older) or seen > discover.max_jobs:
                        break
                    newest_ms = max(newest_ms, listed.create_time_ms)
                    if not self._known(listed.id) and fnmatch.fnmatchcase(listed.name, discover.name):
                        matched[listed.id] = listed.create_time_ms
                        try:
                            batch.append(listed.view())
                        except ValidationError as exc:  # a malformed job costs that job only, as on the list itself
                            self.client.rejects.report(rejected_view(listed, exc))
                            continue
                        discovered.add(listed.id)
                    if len(batch) >= batch_size:
                        await self._poll_new(batch, report)
        except RunloopApiError as exc:
            self._api_failed(exc, report, "listing jobs")
            newest_ms = 0  # a pass cut short settles nothing
        else:
            self._discovered_once = True
            self._api_succeeded(report)
        await self._poll_new(batch, report)
        self._mark_listed(newest_ms, matched, clean=self.client.rejects.seen == rejected_before)
        return discovered

    def _mark_listed(self, newest_ms: int, matched: Mapping[str, int], *, clean: bool) -> None:
        """After a whole pass that read jobs created from `newest_ms` back, the next passes stop there — unless a
        matching job of this pass is still not settled (its poll not recorded, its lease not yet anyone's): the
        mark stays at it, and the next pass reads it again. A pass that met a malformed item (`clean` False)
        leaves the mark where it was: the item is read again until it reads, as a job newer than every known
        one always was."""
        if newest_ms and clean:
            unsettled = [created_ms for job_id, created_ms in matched.items() if not self._known(job_id)]
            self._listed_from_ms = min([newest_ms, *unsettled])

    def _known(self, job_id: str) -> bool:
        """Whether discovery has met the job before: this replica remembers it, or another replica polls it."""
        return self.tracker.knows(job_id) or (self.gate is not None and self.gate.polled_elsewhere(job_id))

    async def _poll_new(self, batch: list[BenchmarkJobView], report: CycleReport) -> None:
        """Poll jobs seen on a list page (their views are fresh: no GET), then let them go. Replicas: each new
        job is polled by the one replica that gets its lease."""
        if self.gate is not None and batch:
            held = await self.gate.admit(self.targets(), new=[job.id for job in batch])
            batch[:] = [job for job in batch if job.id in held]
        await self._wait_for([self._start(job.id, job) for job in batch], report)
        batch.clear()

    def _start(self, job_id: str, listed: BenchmarkJobView | None) -> asyncio.Task[CycleReport] | None:
        """Start polling one job as a task of its own (None if its poll from an earlier cycle still runs: one poll
        of a job at a time)."""
        if job_id in self._running:
            return None
        task = asyncio.create_task(self._own_poll(job_id, listed), name=f"poll {job_id}")
        self._running[job_id] = task
        task.add_done_callback(functools.partial(self._poll_ended, job_id))
        return task

    async def _wait_for(self, polls: list[asyncio.Task[CycleReport] | None], report: CycleReport) -> None:
        """Wait for the polls until the cycle's wait ends (see `run`), all at once: a poll that outlives it goes
        on, and is counted in a later cycle. (Waiting for each on its own cost a task, a future and a timer a
        poll: a tenth of an unchanged cycle's CPU.)"""
        started = [task for task in polls if task is not None]
        if not started:
            return
        timeout_s = None if self._wait_until is None else self._wait_until - asyncio.get_running_loop().time()
        _, pending = await asyncio.wait(started, timeout=None if timeout_s is None else max(timeout_s, 0.0))
        for task in started:
            if task in pending:
                self._outlived.add(task)  # its cycle stops waiting: counted in a later one
            elif not task.cancelled() and task.exception() is None:
                report.add(task.result())

    def _poll_ended(self, job_id: str, task: asyncio.Task[CycleReport]) -> None:
        if self._running.get(job_id) is task:
            del self._running[job_id]
        if task in self._outlived:
            self._outlived.discard(task)
            if not task.cancelled() and task.exception() is None:
                self._late.append(task.result())

    def polls_running(self) -> int:
        """How many polls are under way (some may have outlived their cycle)."""
        return len(self._running)

    async def settle(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for polls still running, then cancel the rest (a stop): nothing of a cancelled
        poll is recorded, and its job is polled again after the restart."""
        running = list(self._running.values())
        if not running:
            return
        _, pending = await asyncio.wait(running, timeout=timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _own_poll(self, job_id: str, listed: BenchmarkJobView | None) -> CycleReport:
        # A job's bytes and parsed snapshot live only while it is polled: a few at a time bound the memory
        # a cycle needs, however many jobs there are.
        report = CycleReport()
        async with self._polling:
            started_ms = self.clock.now_ms()
            with self.tracker.rules.polling():  # a section about to begin waits a moment for this poll to come
                await self._poll_job(job_id, listed, report)
            elapsed_s = max(0, self.clock.now_ms() - started_ms) / 1000
            report.poll_durations.append((elapsed_s, report.failed == 0))
        return report

    async def _poll_job(self, job_id: str, listed: BenchmarkJobView | None, report: CycleReport) -> None:
        try:
            snapshot = await self._fetch_within_deadline(job_id, listed)
            if listed is None:
                self._api_succeeded(report)
            self._not_found.pop(job_id, None)
            self._seen_again(job_id)
            report.polled += 1
            if snapshot is None:
                await self.tracker.observe_unchanged(job_id, self.clock.now_ms())
            else:
                if self._on_snapshot is not None:
                    self._on_snapshot(snapshot)
                self._told(await self.tracker.observe(snapshot), report)
            self._recorded()
        except NotFoundError as exc:
            self._api_succeeded(report)  # the API answered: it is the job that is gone
            await self._maybe_vanished(job_id, exc, report)
        except SchemaError as exc:
            self._not_seen(job_id, report)
            self._api_succeeded(report)  # the API answered: it is this job's data that is wrong
            self._report_malformed(job_id, exc)
        except RunloopApiError as exc:
            self._not_seen(job_id, report)
            self._api_failed(exc, report, f"polling {job_id}")
        except StoreError as exc:
            self._not_recorded(job_id, exc, report)
        except Exception:  # one job's surprise must not stop the others
            self._not_seen(job_id, report)
            log.exception("polling %s failed unexpectedly", job_id)

    async def _fetch_within_deadline(self, job_id: str, listed: BenchmarkJobView | None) -> Snapshot | None:
        """The poll's API calls, retries included, within `watch.poll_timeout`: a job answering a few bytes a
        second must not hold its poll (and its slot) for its six attempts of 30 s each. The commit after it is not
        bounded: cut off halfway, it could leave the store and the tracker's memory disagreeing."""
        deadline_s = self.watch.poll_timeout_ms / 1000
        try:
            async with asyncio.timeout(deadline_s):
                return await (self._fetch(job_id) if listed is None else self._snapshot_of(listed))
        except TimeoutError:
            message = f"no answer within {deadline_s:g}s (watch.poll_timeout); polled again next cycle"
            raise TransientApiError(message, reason=Reason.TIMEOUT) from None

    def _not_recorded(self, job_id: str, exc: StoreError, report: CycleReport) -> None:
        """Nothing of the poll was recorded; the next cycle polls the job again, so nothing is lost."""
        if isinstance(exc, LeaseLostError):  # another replica took the job over: it polls it now
            log.info("%s", exc)
        elif isinstance(exc, BatchRolledBackError):  # another poll routed with it failed (its lease lost)
            log.info("%s: %s", job_id, exc)
        elif isinstance(exc, StoreWriteError):  # the store cannot write: held until it can (store health)
            self._not_seen(job_id, report)
            self._store_failed(exc)
        else:  # the database is away, or its connections are all taken: said once, not once per job and cycle
            report.failed += 1
            if not self._recording_failed:
                log.warning("recording polls fails (%s); each is polled again next cycle (said once)", exc)
            self._recording_failed = True

    def _recorded(self) -> None:
        if self._recording_failed:
            self._recording_failed = False
            log.warning("recording polls works again")

    def _seen_again(self, job_id: str) -> None:
        """A successful poll: the time since the last one counts as quiet only if no poll failed in between (and
        the watcher ran all along); otherwise it is blind time, which no stall is made of."""
        self._malformed.discard(job_id)
        if job_id in self._seeing:
            return
        self._seeing.add(job_id)
        memory = self.tracker.memory(job_id)
        if memory is not None:
            self.tracker.add_blind(job_id, self.clock.now_ms() - memory.last_seen_ms)

    def _not_seen(self, job_id: str, report: CycleReport) -> None:
        report.failed += 1
        self._seeing.discard(job_id)

    def _report_malformed(self, job_id: str, exc: SchemaError) -> None:
        """Warn once per job whose data is malformed (again after it was fine in between), not on every poll."""
        if job_id not in self._malformed:
            self._malformed.add(job_id)
            log.warning("job %s is malformed, skipped until it reads again: %s", job_id, exc)

    async def _snapshot_of(self, job: BenchmarkJobView) -> Snapshot:
        """A snapshot of a job already parsed (from a list page): fetch its scenario runs."""
        pages = await self._pages(job, {}, set())
        return Snapshot(job=job, at_ms=self.clock.now_ms(), scenario_runs=self._scenario_runs(job.id, pages, {}))

    async def _fetch(self, job_id: str) -> Snapshot | None:
        """Fetch a job and its followed runs' scenario runs as bytes; None when they hash as last time."""
        body = await self.client.get_job_raw(job_id)
        memory = self.tracker.memory(job_id) or await self.tracker.taken_over_memory(job_id)
        pages: dict[str, list[bytes]] = {}
        malformed: set[str] = set()  # runs whose pages could not be read this poll: fetched once, not again
        fingerprint = None
        if memory is not None:
            if self.watch.scenario_runs and not memory.finished:
                for run_id in sorted(r for r, memo in memory.runs.items() if not memo.finished):
                    found = await self._run_pages(job_id, run_id, malformed)
                    if found is not None:
                        pages[run_id] = found
            fingerprint = _fingerprint(body, pages)
            if memory.fingerprint == fingerprint:
                return None
        job = parse_body(f"/v1/benchmark_jobs/{job_id}", body, BenchmarkJobView)
        followed = await self._pages(job, pages, malformed)
        if fingerprint is None or followed.keys() != pages.keys():  # hash the bytes again only if the runs differ
            fingerprint = _fingerprint(body, followed)
        at_ms = self.clock.now_ms()
        scenario_runs = self._scenario_runs(job_id, followed, self.tracker.seen_scenarios(job_id))
        return Snapshot(job=job, at_ms=at_ms, scenario_runs=scenario_runs, fingerprint=fingerprint)

    async def _pages(
        self, job: BenchmarkJobView, fetched: dict[str, list[bytes]], malformed: set[str]
    ) -> dict[str, list[bytes]]:
        """Scenario-run pages of exactly the runs to follow now, reusing those fetched already (and leaving out the
        runs whose pages are malformed)."""
        if not self.watch.scenario_runs or job.is_terminal:
            return {}
        pages = {}
        for run_id in runs_to_follow(job):
            if run_id in malformed:
                continue
            found = fetched[run_id] if run_id in fetched else await self._run_pages(job.id, run_id, malformed)
            if found is not None:
                pages[run_id] = found
        return pages

    async def _run_pages(self, job_id: str, run_id: str, malformed: set[str]) -> list[bytes] | None:
        """A followed run's scenario-run pages; None when one is malformed (read to find the next page's cursor):
        that run's scenario events sit this poll out, the job's own events do not."""
        try:
            return await self.client.scenario_runs_raw(run_id)
        except MALFORMED_PAGES as exc:
            malformed.add(run_id)
            self._report_malformed_run(job_id, run_id, exc)
            return None

    def _scenario_runs(
        self, job_id: str, pages: Mapping[str, list[bytes]], previous: Mapping[str, frozenset[int]]
    ) -> dict[str, RunScenarios]:
        """Decode each run's pages and compare its latest attempts with the previous poll's. A run whose pages are
        malformed is left out of the snapshot: no scenario event of it this poll (its counts stay as last read),
        told once until it reads again; the job's own events still flow."""
        runs = {}
        for run_id, bodies in pages.items():
            try:
                statuses = decode_pages(run_id, bodies)
            except MALFORMED_PAGES as exc:
                self._report_malformed_run(job_id, run_id, exc)
                continue
            self._malformed_runs.discard(run_id)
            runs[run_id] = RunScenarios.build(statuses, previous.get(run_id))
        return runs

    def _report_malformed_run(self, job_id: str, run_id: str, exc: SchemaError | MalformedResponseError) -> None:
        if run_id not in self._malformed_runs:
            self._malformed_runs.add(run_id)
            log.warning(
                "the scenario runs of run %s (job %s) are malformed; its scenario events wait until they read "
                "again, the job's own go on: %s", run_id, job_id, exc,
            )  # fmt: skip

    async def _maybe_vanished(self, job_id: str, exc: NotFoundError, report: CycleReport) -> None:
        """A 404: warned once when it starts (a configured job that never existed: once it is sure), and once more
        when the job is taken as vanished — never at every cycle."""
        count = self._not_found.get(job_id, 0) + 1
        self._not_found[job_id] = count
        memory = self.tracker.memory(job_id)
        if memory is None:
            if count == NOT_FOUND_LIMIT:
                log.warning("configured job %s does not exist (404); check watch.jobs (still asked each cycle)", job_id)
            return
        if count < NOT_FOUND_LIMIT:
            log.warning("job %s (%s) answered 404; if it does again, it has vanished", job_id, memory.job_name)
            return
        result = vanish(memory, self.clock.now_ms())
        if result is not None:
            event, updated = result
            log.warning("job %s (%s) answered 404 again: vanished, no longer polled", job_id, memory.job_name)
            try:
                self._told(await self.tracker.record([event], updated, event.at_ms), report)
            except StoreWriteError as write_error:  # told on a later poll, once the store writes again
                self._store_failed(write_error)

    async def _timed(self, report: CycleReport) -> None:
        now_ms = self.clock.now_ms()
        for memory in self.tracker.live():
            if self.gate is not None and not self.gate.holds(memory.job_id):
                continue  # another replica's job: its holder watches the clock for it
            if memory.job_id in self._running:
                continue  # its poll, still running, commits the job's memory: one writer at a time
            result = stall(memory, now_ms, self.watch.stall_after_ms)
            if result is not None:
                event, updated = result
                self._told(await self.tracker.record([event], updated, now_ms), report)
        outage = self.health.check(now_ms)
        if outage is not None:
            self._health_events.append(outage)
        health_events, self._health_events = self._health_events, []
        if health_events:
            try:
                self._told(await self.tracker.record(health_events, None, now_ms), report)
            except StoreError:  # nothing of them recorded: told with the next cycle's (the API health told them once)
                self._health_events = [*health_events, *self._health_events]
                raise

    def _api_succeeded(self, report: CycleReport) -> None:
        recovered = self.health.succeeded(self.clock.now_ms())
        if recovered is not None:
            self._health_events.append(recovered)  # recorded with the timed events, at the end of the cycle

    def _api_failed(self, exc: RunloopApiError, report: CycleReport, doing: str) -> None:
        report.api_errors.append(exc)
        self.health.failed(self.clock.now_ms(), str(exc))
        log.warning("%s failed: %s", doing, exc)

    def _told(self, observation: Observation, report: CycleReport) -> None:
        report.events.extend(observation.events)
        for event in observation.events:
            # Progress comes every poll of every job: a person acts on the other events, so only they are INFO.
            level = logging.DEBUG if isinstance(event, JobProgress) else logging.INFO
            extra = {"event_kind": event.kind, "event_id": event.id, "job_id": event.job_id}
            event_log.log(level, "%s", event_line(event), extra=extra)
        if observation.notifications:
            report.notifications += len(observation.notifications)
            self.on_notifications()

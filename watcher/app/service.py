"""`benchwatch run`: the long-running watcher — APScheduler drives poll cycles and rule timers, the delivery
worker sends, the status endpoint answers; SIGTERM stops it all in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

import aiohttp
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent

from notifiers.refresh import Refresher
from notifiers.worker import RECORD_WINDOW
from rules.config import SilenceConfig
from rules.engine import Router
from watcher.api.client import RequestLimits, RunloopClient
from watcher.api.errors import RunloopApiError
from watcher.api.health import ApiHealth
from watcher.app.config import Config, LoadedConfig, WatchSection
from watcher.app.cycle import SLOT_JOBS, CycleReport, PollCycle
from watcher.app.delivery import build_notifiers, build_worker, delivery_policies
from watcher.app.logs import redact_more, secrets_of
from watcher.app.reload import effective, needs_restart, read_again
from watcher.app.replicas import LeaseGate
from watcher.app.scheduler import LoopScheduler
from watcher.app.steps import Step
from watcher.core.clock import Clock, SystemClock
from watcher.core.ratelimit import Sleep
from watcher.core.storehealth import StoreHealth
from watcher.core.summary import JobSummary
from watcher.diff.summary import dashboard_url_for
from watcher.diff.trend import DEFAULT_TREND_JOBS
from watcher.pipeline.baseline import BaselineSection
from watcher.pipeline.catchup import CatchUp
from watcher.pipeline.comparer import job_comparer
from watcher.pipeline.digest import DigestScheduler, digest_scheduler
from watcher.pipeline.recording import SnapshotRecorder
from watcher.pipeline.summaries import RecentSummaries
from watcher.pipeline.tracker import JobTracker
from watcher.store import open_store
from watcher.store.errors import BatchRolledBackError, StoreError, StoreWriteError
from watcher.store.protocol import Store
from watcher.web.metrics import Metrics
from watcher.web.status import StatusServer, create_status_app, start_status_server

log = logging.getLogger("benchwatch.service")

FIRST_POLL_JOB = "first-poll-cycle"
POLL_JOB = "poll-cycle"
SECOND_JOB = "rule-timers-and-notifier-refresh"
HEARTBEAT_JOB = "lease-heartbeat"
FIRST_DIGEST_JOB = "first-digests"
DIGEST_JOB = "digests"
STOP_GRACE_S = 10.0


class Service:
    """The watcher as a process: everything is built here, opened by `started`, driven by `run` until told to stop,
    and closed in order. Build it inside the event loop (its HTTP session belongs to the running loop)."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        clock: Clock | None = None,
        recorder: SnapshotRecorder | None = None,
        sleep: Sleep = asyncio.sleep,
        state: str | Path | None = None,
        stop_grace_s: float = STOP_GRACE_S,
        slot_jobs: int = SLOT_JOBS,
        record_window: int = RECORD_WINDOW,
    ) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.recorder = recorder  # `run --record`: every changed snapshot polled, as a replay line
        self.clock = clock or SystemClock()
        self._sleep = sleep  # the poll spread's and the client's retries' waits: tests move a manual clock instead
        self._slot_jobs = slot_jobs  # jobs whose polls start together in a cycle's spread (tests: one)
        self._record_window = record_window  # sends being recorded at most (tests: one, an exact count)
        self.metrics = Metrics()
        self.health = ApiHealth(self.config.watch.api_unreachable_after_ms)
        self.store_health = StoreHealth()  # one view of the store's writes: polls, sends and /readyz share it
        self.status: StatusServer | None = None  # listening while started
        location = state if state is not None else loaded.state_location()  # `run --state` over the config's
        # Replicas time leases and claims by the database's clock; a clock injected here (tests) times them too.
        self._store = open_store(
            location, exclusive=True, lease_ttl_ms=self.config.state.lease_ttl_ms, caller_clock=clock is not None
        )
        self._session = aiohttp.ClientSession()  # the client's and the notifiers', closed last but for the store
        self.client = self._client()
        self._summaries = RecentSummaries()
        self.tracker = self._tracker()
        self.worker = build_worker(
            self.config,
            self._store,
            self._session,
            self.clock,
            self.store_health,
            record_window=self._record_window,
        )
        # replicas (PostgreSQL): which jobs this one polls
        self.gate = (
            LeaseGate(
                self._store,
                self.tracker,
                self.clock,
                self.store_health,
                on_takeover=self.worker.wake,
                on_outbox=self.worker.looked,
                reuse_ms=self._admit_reuse_ms(),
                timers_for_ms=self._timers_for_ms(),
            )
            if self._store.shared
            else None
        )
        self.cycle = self._cycle()
        self.refresher = Refresher(self.clock)  # re-sends what notifiers keep open (Alertmanager's alerts)
        self.digests: DigestScheduler | None = digest_scheduler(
            self.config.digests, self._store, self.client, self.config.failure_classes.table()
        )
        self.stop_grace_s = stop_grace_s  # how long a stop waits for the steps and the sends under way
        self._polls = Step("the poll cycle", self._poll_cycle)
        self._timers = Step("flushing rule timers", self._flush_timers)
        self._beats = Step("the lease heartbeat", self._heartbeat)
        self._refreshes = Step("refreshing notifiers", self._refresh_notifiers)
        self._digests = Step("sending digests", self._send_digests)
        self._open = False
        self._last_cycle_end_ms: int | None = None
        self._cycles = 0
        self._reloading: asyncio.Task[list[str]] | None = None

    def _client(self) -> RunloopClient:
        return RunloopClient(
            base_url=self.config.runloop.resolved_base_url(os.environ),
            api_key=self.config.runloop.api_key,
            session=self._session,
            limits=RequestLimits(self.config.watch.max_concurrent_requests, self.config.watch.max_requests_per_s),
            sleep=self._sleep,
            clock=self.clock,
        )

    def _tracker(self) -> JobTracker:
        dashboard_url = dashboard_url_for(self.client.base_url)
        classes = self.config.failure_classes.table()
        return JobTracker(
            self._store,
            router=_router(self.config),
            dashboard_url=dashboard_url,
            comparer=job_comparer(self.config.baseline, self._store, self.client, dashboard_url, classes),
            shared_rules=self._store.shared,
            summaries=self._summaries,
            catch_up=CatchUp(self.config.watch.catch_up.max_age_ms),
            failure_classes=classes,
            infra_alert_ratio=self.config.watch.infra_alert_ratio,
        )

    def _cycle(self) -> PollCycle:
        return PollCycle(
            watch=self.config.watch,
            client=self.client,
            tracker=self.tracker,
            clock=self.clock,
            health=self.health,
            on_notifications=self.notifications_committed,
            on_snapshot=self.recorder.write if self.recorder is not None else None,
            gate=self.gate,
            store_health=self.store_health,
            sleep=self._sleep,
            slot_jobs=self._slot_jobs,
        )

    @property
    def is_open(self) -> bool:
        """Whether `started` has opened everything (and not closed it yet)."""
        return self._open

    @property
    def store(self) -> Store:
        """The state store (for the status API)."""
        return self._store

    async def run(self, stop: asyncio.Event) -> int:
        """Run until `stop` is set, APScheduler calling the steps; returns the exit code."""
        async with self.started():
            worker_task = asyncio.create_task(self.worker.run(), name="delivery worker")
            # Another replica's or process's commit wakes this worker too (PostgreSQL: LISTEN/NOTIFY; SQLite: its
            # data_version, so `benchwatch deliveries retry` goes out at once).
            # PostgreSQL: this replica's own commits hand their notifications to this worker (`Taker`).
            listener = asyncio.create_task(self._store.listen(self.worker.wake, self.worker), name="outbox listener")
            scheduler = self._start_scheduler()
            watching = _watching(self.config.watch, len(self.cycle.targets()))
            log.info("%s from %s; polling every %.0fs", watching, self.client.base_url, self._interval_s())
            try:
                await stop.wait()
            finally:
                listener.cancel()
                await self._shutdown(scheduler, worker_task)
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
        log.info("stopped")
        return 0

    @contextlib.asynccontextmanager
    async def started(self) -> AsyncIterator[Service]:
        """The store open, the memories loaded, the status endpoint listening — but nothing scheduled: the steps
        (`poll_once`, `flush_timers`, `drain`) run when called. `run` has APScheduler call them; tests call them on
        a manual clock. On exit (or a failure to open) the endpoint, the client, the store and the HTTP session
        close, in that order."""
        async with contextlib.AsyncExitStack() as opened:
            opened.push_async_callback(self._session.close)
            await self._store.open()
            opened.push_async_callback(self._store.close)
            await self.tracker.load_memories()
            if self.tracker.catch_up is not None:
                await self.tracker.catch_up.start(self._store, self.clock.now_ms())
            self.metrics.config_loaded(True, self.clock.now_ms() / 1000)
            opened.push_async_callback(self._close_endpoints)
            # first of all at the exit: a poll still running past its cycle is cancelled, nothing of it recorded
            opened.push_async_callback(self.cycle.settle, 0)
            await self._start_status()
            self._open = True
            try:
                yield self
            finally:
                self._open = False

    def _interval_s(self) -> float:
        return self.config.watch.poll_interval_ms / 1000

    def _heartbeat_ms(self) -> int:
        """Replicas renew their leases three times per TTL, whatever the poll interval."""
        return self.config.state.lease_ttl_ms // 3

    def _admit_reuse_ms(self) -> int | None:
        """How long a cycle may take the last heartbeat's leases for its own (`LeaseGate`): a heartbeat period, where
        heartbeats come at least as often as cycles — they alone then take a dead replica's jobs within the failover
        bound (TTL + the shorter of a heartbeat and a poll interval). Where cycles come more often, each renews, as
        their takeovers are the sooner ones."""
        heartbeat_ms = self._heartbeat_ms()
        return heartbeat_ms if heartbeat_ms <= self.config.watch.poll_interval_ms else None

    def _timers_for_ms(self) -> int:
        """How long a heartbeat's rule-timer claim lets this replica flush (`LeaseGate.holds_timers`): two heartbeat
        periods — one heartbeat missed (the database slow for a moment) does not stop the timers, two do, before
        the claim (a TTL, three heartbeats) can expire and be taken by another replica."""
        return 2 * self._heartbeat_ms()

    def _cycle_wait_s(self) -> float:
        """How long a cycle waits for its polls: until the next run can come at the earliest (jitter may bring it
        forward by its share of the interval), less the tenth of the interval the config keeps free (spread +
        jitter ≤ 0.9), so the wait never ends before the last slot of polls has started.

        A cycle that waited a whole interval ended just after its next run was due, and APScheduler skipped that run
        (`max_instances`): every job waited two intervals. On `ha`'s many workload one replica skipped two of seven
        cycles while 200 jobs changed every second — it missed changes that three replicas saw."""
        return self._interval_s() * (0.9 - self.config.watch.jitter)

    def _start_scheduler(self) -> LoopScheduler:
        """APScheduler calls the steps on their intervals (the first cycle at once); a step still running when its
        next run comes is not started twice (`max_instances`), and runs missed meanwhile collapse into one."""
        scheduler = LoopScheduler(timezone=UTC)
        interval_s = self._interval_s()
        # No trigger: once, at the scheduler's own now (its clock is real time, whatever clock the steps read); never
        # skipped as missed, however late the loop gets to it.
        scheduler.add_job(self.poll_once, id=FIRST_POLL_JOB, misfire_grace_time=None)
        scheduler.add_job(
            self.poll_once,
            "interval",
            seconds=interval_s,
            jitter=interval_s * self.config.watch.jitter or None,
            id=POLL_JOB,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(interval_s)),
        )
        # One job for the two 1-second steps: each run of a scheduler job costs a wake-up, a task and its events —
        # a tenth of what a watcher at rest on 10 jobs spends beside its polls.
        scheduler.add_job(self.each_second, "interval", seconds=1, id=SECOND_JOB, max_instances=1, coalesce=True)
        # Digests are due at a minute of the day: a look every 30 s is on time (always scheduled: a reload may add
        # one); the first look at once, for the digests that fell due while the watcher was down.
        scheduler.add_job(self.send_digests, id=FIRST_DIGEST_JOB, misfire_grace_time=None)
        scheduler.add_job(self.send_digests, "interval", seconds=30, id=DIGEST_JOB, max_instances=1, coalesce=True)
        if self.gate is not None:  # leases renewed three times per TTL, whatever the poll interval
            heartbeat_s = self._heartbeat_ms() / 1000
            scheduler.add_job(self.heartbeat, "interval", seconds=heartbeat_s, id=HEARTBEAT_JOB, coalesce=True)
        scheduler.add_listener(self.scheduler_event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        scheduler.start()
        return scheduler

    def scheduler_event(self, event: JobExecutionEvent) -> None:
        """APScheduler's news of a run skipped, missed or failed: logged; a poll cycle skipped is also counted."""
        if event.code == EVENT_JOB_MAX_INSTANCES and event.job_id == POLL_JOB:
            self.metrics.cycle_skipped()
        _log_scheduler_event(event)

    async def _start_status(self) -> None:
        settings = self.config.http
        if not settings.enabled:
            return
        self.status = await start_status_server(create_status_app(self), settings.host, settings.port)
        log.info(
            "status endpoint on http://%s:%d (/healthz /readyz /metrics /api/jobs /api/events)",
            settings.host,
            self.status.port,
        )

    async def poll_once(self) -> CycleReport:
        """One poll cycle (the scheduler's interval job); cycles never overlap, and one under way at a stop ends."""
        report = await self._polls()
        return report if report is not None else CycleReport()

    async def _poll_cycle(self) -> CycleReport:
        started_ms = self.clock.now_ms()
        try:
            await self.tracker.refresh_silences()
        except StoreError as exc:  # the database is away (told once by the cycle): the last ones stay in force
            log.warning("reading the runtime silences failed (%s); the previous ones stay", exc)
        except Exception:  # not the store: a bug, whose traceback is worth its lines
            log.warning("reading the runtime silences failed; the previous ones stay", exc_info=True)
        # A slow job's poll goes on alone past its cycle, and the next cycle polls every other job on time
        # (watch.poll_timeout bounds the slow one): see `_cycle_wait_s`.
        interval_s = self._interval_s()
        report = await self.cycle.run(spread_s=interval_s * self.config.watch.spread, wait_s=self._cycle_wait_s())
        self._cycles += 1
        self._last_cycle_end_ms = self.clock.now_ms()
        elapsed_s = max(0, self._last_cycle_end_ms - started_ms) / 1000
        self._count(report, elapsed_s)
        log.debug(
            "cycle %d: %d polled, %d failed, %d events, %d notifications in %.2fs",
            self._cycles, report.polled, report.failed, len(report.events), report.notifications, elapsed_s,
        )  # fmt: skip
        return report

    def _count(self, report: CycleReport, elapsed_s: float | None) -> None:
        if elapsed_s is not None:  # None: polls between cycles (jobs taken over), no cycle
            self.metrics.poll_cycle(elapsed_s)
        self.metrics.events(event.kind for event in report.events)
        for error in report.api_errors:
            self.metrics.api_error(error.reason, error.status)
        for duration_s, ok in report.poll_durations:
            self.metrics.poll(duration_s, ok)
        if report.polled and not report.failed and self._last_cycle_end_ms is not None:
            self.metrics.last_successful_poll(self._last_cycle_end_ms / 1000)
        self.metrics.api_reachable(self.health.reachable)

    async def heartbeat(self) -> None:
        """Replicas: renew the leases (the scheduler's TTL / 3 job)."""
        await self._beats()

    async def _heartbeat(self) -> None:
        """Jobs taken over from a dead replica are polled at once — they have waited a lease TTL already — whether
        or not a cycle is under way (`PollCycle.start_taken_over`)."""
        if self.gate is None:
            return
        await self.gate.heartbeat()
        if self.gate.has_fresh() and not self._polls.stopped:
            self.cycle.start_taken_over()

    async def each_second(self) -> None:
        """The scheduler's 1-second job: flush the rule timers that are due, then refresh the notifiers."""
        await self.flush_timers()
        await self.refresh_notifiers()

    async def flush_timers(self) -> None:
        """Close rule group windows that are due (the scheduler's 1-second job)."""
        await self._timers()

    async def _flush_timers(self) -> None:
        """Replicas: only the one holding the timer claim flushes, from the rule state in the store."""
        now_ms = self.clock.now_ms()
        if not self.store_health.writable:
            return
        try:
            if self.gate is not None:
                if not self.gate.holds_timers():
                    return
            elif (due_ms := self.tracker.next_due_ms()) is None or due_ms > now_ms:
                return
            observation = await self.tracker.flush_due(now_ms)
        except StoreWriteError as exc:  # the windows stay open; flushed once the store writes again
            self.store_health.failed(self.clock.now_ms(), str(exc))
            return
        except BatchRolledBackError as exc:  # another turn of its section failed: still due at the next tick
            log.info("flushing rule timers: %s", exc)
            return
        except StoreError as exc:  # the database is away: the timers are still due when it returns
            log.warning("flushing rule timers failed: %s", exc)
            return
        if observation.notifications:
            self.notifications_committed()

    def notifications_committed(self) -> None:
        """A commit of this process put notifications in the outbox: the worker looks now, unless the commit
        handed them to it already (`Store.hands_over_commits`)."""
        if not self._store.hands_over_commits:
            self.worker.wake()

    async def refresh_notifiers(self) -> int:
        """Re-send what notifiers keep open whose interval has passed (Alertmanager's alerts; the scheduler's
        1-second job); returns how many were re-sent. Every replica does it: re-posting an alert is idempotent."""
        refreshed = await self._refreshes()
        return refreshed or 0

    async def _refresh_notifiers(self) -> int:
        return await self.refresher.refresh_due(self.worker.notifiers)

    async def send_digests(self) -> int:
        """Send the digests that are due (the scheduler's 30-second job; at start, the ones due while down);
        replicas: only the one holding the timer claim. Returns how many notifications were queued."""
        queued = await self._digests()
        return queued or 0

    async def _send_digests(self) -> int:
        now_ms = self.clock.now_ms()
        if self.digests is None or not self.store_health.writable:
            return 0
        try:
            if self.gate is not None and not self.gate.holds_timers():
                return 0
            queued = await self.digests.run_due(now_ms)
        except StoreError as exc:  # the database is away: the digests are still due when it returns
            log.warning("sending digests failed: %s", exc)
            return 0
        if queued:
            self.notifications_committed()
        return queued

    async def drain(self) -> int:
        """Send everything due now and wait for the sends to end (tests; `run` has the worker running instead)."""
        return await self.worker.drain()

    async def readiness(self) -> tuple[bool, str]:
        """Ready once a cycle has finished recently (within three intervals), and the store answers and can write."""
        if not self._store.reachable:
            return False, "the state store is unreachable"
        if not self.store_health.writable:
            return False, self.store_health.describe(self.clock.now_ms())
        if self._last_cycle_end_ms is None:
            return False, "no poll cycle has finished yet"
        age_s = (self.clock.now_ms() - self._last_cycle_end_ms) / 1000
        if age_s > 3 * self._interval_s() + 30:
            return False, f"the last poll cycle finished {age_s:.0f}s ago"
        return True, f"last poll cycle finished {age_s:.0f}s ago"

    async def refresh_metrics(self) -> None:
        """Gauges read from the store and the worker, before a scrape (readiness first: it needs no store read)."""
        ready, _ = await self.readiness()
        self.metrics.readiness(ready, self.store_health.writable and self._store.reachable)
        self.metrics.poll_interval(self._interval_s())
        counts = await self._store.outbox_counts()
        self.metrics.outbox(counts)
        self.metrics.sync_deliveries(self.worker.stats)
        self.metrics.watched(len(self.tracker.live()))
        if self.gate is not None:
            self.metrics.replica(len(self.gate.held), await self._store.outbox_claims())

    def now_ms(self) -> int:
        """The service's clock (for the status API)."""
        return self.clock.now_ms()

    def action_token(self) -> str | None:
        """The token actions need, or None: actions disabled."""
        token = self.config.http.token
        return token.get_secret_value().strip() if token is not None else None

    def wake_delivery(self) -> None:
        """A dead letter was queued again: send it now."""
        self.worker.wake()

    def summaries(self) -> Mapping[str, JobSummary]:
        """The jobs' latest summaries (for the status page)."""
        return self._summaries

    def config_silences(self) -> Sequence[SilenceConfig]:
        """The config file's silences in force."""
        return self.config.silences

    def dashboard_url(self) -> str:
        """The Runloop dashboard of the configured API."""
        return dashboard_url_for(self.client.base_url)

    def rule_names(self) -> Sequence[str]:
        """The config's rules, in order (the delivery log's filter)."""
        return [rule.name for rule in self.config.rules]

    def notifier_names(self) -> Sequence[str]:
        """The config's notifiers (the delivery log's filter)."""
        return sorted(self.config.notifiers)

    def trend_jobs(self) -> int:
        """The status page's trend window: 10 jobs, or `baseline.history` when that looks further back."""
        baseline = self.config.baseline if self.config.baseline is not None else BaselineSection()
        return max(DEFAULT_TREND_JOBS, baseline.history)

    def reload_soon(self) -> None:
        """Reload in the background (SIGHUP); a reload already under way is not started twice."""
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.create_task(self._reload_logged(), name="config reload")

    async def _reload_logged(self) -> list[str]:
        try:
            return await self.reload()
        except Exception:  # a signal handler's task: nobody else would see the error
            log.exception("reload failed; the running config stays")
            self.metrics.config_loaded(False, self.clock.now_ms() / 1000)
            return ["reload failed unexpectedly (see the log)"]

    async def reload(self) -> list[str]:
        """Read the config again; a valid one applies from the next poll, an invalid one is refused (its
        problems returned and logged) and the running one stays."""
        if not self._open:  # SIGHUP before the store opened, or during the stop
            log.warning("reload asked while the watcher is starting or stopping; ignored")
            return ["the watcher is starting or stopping; try again once it runs"]
        result = read_again(self.loaded.path)
        if result.loaded is None:
            self.metrics.config_loaded(False, self.clock.now_ms() / 1000)
            return list(result.problems)
        redact_more(secrets_of(result.loaded.config))
        for setting in needs_restart(self.config, result.loaded.config):
            log.warning("reload: %s changed; that takes a restart (the old value stays until then)", setting)
        new = effective(self.config, result.loaded.config)
        async with self._polls.exclusive() as open_:  # a cycle sees the old config or the new one, never half of each
            if not open_:
                return ["the watcher is stopping"]
            await self._apply(new, result.loaded.path)
        self.metrics.config_loaded(True, self.clock.now_ms() / 1000)
        log.info("reloaded %s: %d rules, %d notifiers, %d silences", self.loaded.path, len(new.rules),
                 len(new.notifiers), len(new.silences))  # fmt: skip
        return []

    async def _apply(self, new: Config, path: Path) -> None:
        """Swap in what a reloaded config changes (between two cycles)."""
        await self.tracker.use_router(_router(new))
        self.worker.use_notifiers(build_notifiers(new, self._store, self._session, self.clock), delivery_policies(new))
        self.cycle.use_watch(new.watch)
        classes = new.failure_classes.table()
        dashboard_url = self.tracker.dashboard_url
        self.tracker.comparer = job_comparer(new.baseline, self._store, self.client, dashboard_url, classes)
        self.tracker.failure_classes = classes
        self.tracker.infra_alert_ratio = new.watch.infra_alert_ratio
        if self.tracker.catch_up is not None:
            self.tracker.catch_up.max_age_ms = new.watch.catch_up.max_age_ms
        self.digests = digest_scheduler(new.digests, self._store, self.client, classes)
        self.health.unreachable_after_ms = new.watch.api_unreachable_after_ms
        self.loaded, self.config = LoadedConfig(new, path), new

    async def _shutdown(self, scheduler: LoopScheduler, worker_task: asyncio.Task[None]) -> None:
        """Claim nothing new — no poll cycle, no send — and give the running steps and the sends in flight one grace
        together (not one after the other: the process exits within the grace and a second); then the endpoint.
        A step still running at the end of the grace is cut off, and says so in one line."""
        grace_s = self.stop_grace_s
        log.info("stopping: no new poll cycles or sends; finishing what is under way (at most %.0fs)", grace_s)
        scheduler.pause()
        grace_ends = time.monotonic() + grace_s
        steps: tuple[Step[Any], ...] = (self._polls, self._timers, self._beats, self._refreshes, self._digests)
        stopped = asyncio.gather(*(step.stop(grace_s) for step in steps))
        _, ended = await asyncio.gather(self.worker.stop(grace_s=grace_s), stopped)
        for step, whole in zip(steps, ended, strict=True):
            if not whole:
                log.warning(
                    "%s was still under way at the end of the stop's grace (%.0fs) and was cut off; what it had not "
                    "committed is done again at the next start",
                    step.name,
                    grace_s,
                )
        await self.cycle.settle(max(grace_ends - time.monotonic(), 0))  # polls that outlived their cycle
        scheduler.shutdown(wait=False)
        worker_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker_task

    async def _close_endpoints(self) -> None:
        """The status endpoint, then the client."""
        if self.status is not None:
            await self.status.close()
            self.status = None
        await self.client.close()


def _router(config: Config) -> Router:
    """The rules of a config, as a router."""
    return Router(config.rules, config.silences, inhibit=config.inhibit, time_intervals=config.time_intervals)


def _log_scheduler_event(event: JobExecutionEvent) -> None:
    if event.code == EVENT_JOB_MAX_INSTANCES:
        log.warning("%s: the previous run is still going; this run was skipped", event.job_id)
    elif event.code == EVENT_JOB_MISSED:
        log.warning("%s: runs were missed (the loop was busy); they are coalesced into the next one", event.job_id)
    elif (
        event.code == EVENT_JOB_ERROR
        and event.exception is not None
        and not isinstance(event.exception, RunloopApiError | asyncio.CancelledError)  # cancelled: stopping
    ):
        log.error("%s failed: %s", event.job_id, event.exception, exc_info=event.exception)


def _watching(watch: WatchSection, n_targets: int) -> str:
    """What the service watches, said at start: with discovery, the jobs found are not known yet (not "0 jobs")."""
    if watch.discover is None:
        return f"watching {n_targets} jobs"
    listed = f" and {len(watch.jobs)} listed" if watch.jobs else ""
    return f"watching jobs named {watch.discover.name!r} (found at the first poll){listed}"

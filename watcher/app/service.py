"""`benchwatch run`: the long-running watcher — APScheduler drives poll cycles and rule timers, the delivery
worker sends, the status endpoint answers; SIGTERM stops it all in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime

import aiohttp
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from rules.config import SilenceConfig
from rules.engine import Router
from watcher.api.client import RequestLimits, RunloopClient
from watcher.api.errors import RunloopApiError
from watcher.api.health import ApiHealth
from watcher.app.config import LoadedConfig, WatchSection
from watcher.app.cycle import CycleReport, PollCycle
from watcher.app.delivery import build_notifiers, build_worker, delivery_policies
from watcher.app.logs import redact_more, secrets_of
from watcher.app.reload import effective, needs_restart, read_again
from watcher.app.replicas import LeaseGate
from watcher.core.clock import Clock, SystemClock
from watcher.core.ratelimit import Sleep
from watcher.core.storehealth import StoreHealth
from watcher.core.summary import JobSummary
from watcher.diff.summary import dashboard_url_for
from watcher.pipeline.baseline import BaselineSection
from watcher.pipeline.comparer import job_comparer
from watcher.pipeline.recording import SnapshotRecorder
from watcher.pipeline.tracker import JobTracker
from watcher.store import open_store
from watcher.store.errors import StoreError, StoreWriteError
from watcher.store.protocol import Store
from watcher.web.metrics import Metrics
from watcher.web.status import StatusServer, create_status_app, start_status_server

log = logging.getLogger("benchwatch.service")

POLL_JOB = "poll-cycle"
TIMER_JOB = "rule-timers"
HEARTBEAT_JOB = "lease-heartbeat"
STOP_GRACE_S = 10.0


class Service:
    """The watcher as a process: open everything, run until told to stop, close everything in order."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        clock: Clock | None = None,
        recorder: SnapshotRecorder | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.loaded = loaded
        self.recorder = recorder  # `run --record`: every changed snapshot polled, as a replay line
        self.config = loaded.config
        self.clock = clock or SystemClock()
        self._sleep = sleep  # the poll spread's and the client's retries' waits: tests move a manual clock instead
        self.metrics = Metrics()
        self.health = ApiHealth(self.config.watch.api_unreachable_after_ms)
        self.store_health = StoreHealth()  # one view of the store's writes: polls, sends and /readyz share it
        self.status: StatusServer | None = None
        self._store = open_store(loaded.state_location(), exclusive=True, lease_ttl_ms=self.config.state.lease_ttl_ms)
        self.gate: LeaseGate | None = None  # replicas (PostgreSQL): which jobs this one polls
        self._cycle_lock = asyncio.Lock()
        self._step_locks: list[asyncio.Lock] = []  # one per scheduled side step (timers, heartbeat): see `_whole`
        self._last_cycle_end_ms: int | None = None
        self._cycles = 0
        self._reloading: asyncio.Task[list[str]] | None = None

    @property
    def store(self) -> Store:
        """The state store (for the status API)."""
        return self._store

    async def run(self, stop: asyncio.Event) -> int:
        """Run until `stop` is set, APScheduler driving the steps; returns the exit code."""
        async with self.started():
            worker_task = asyncio.create_task(self.worker.run(), name="delivery worker")
            # Another replica's commit wakes this worker too (LISTEN/NOTIFY); with SQLite this returns at once.
            listener = asyncio.create_task(self._store.listen(self.worker.wake), name="outbox listener")
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
        """Everything open — store, HTTP session, client, tracker, worker, status endpoint — but nothing scheduled:
        the steps (`poll_once`, `flush_timers`, `drain`) run when called. `run` calls them from APScheduler; tests
        call them on a manual clock. On exit the endpoint, the client and the store close, in that order."""
        await self._store.open()
        try:
            async with aiohttp.ClientSession() as session:
                self._wire(session)
                await self.tracker.load_memories()
                self.metrics.config_loaded(True, time.time())
                try:
                    await self._start_status()
                    yield self
                finally:
                    await self._close_endpoints()
        finally:
            await self._store.close()

    def _wire(self, session: aiohttp.ClientSession) -> None:
        base_url = self.config.runloop.resolved_base_url(os.environ)
        self.client = RunloopClient(
            base_url=base_url,
            api_key=self.config.runloop.api_key,
            session=session,
            limits=RequestLimits(self.config.watch.max_concurrent_requests, self.config.watch.max_requests_per_s),
            sleep=self._sleep,
            clock=self.clock,
        )
        router = Router(
            self.config.rules,
            self.config.silences,
            inhibit=self.config.inhibit,
            time_intervals=self.config.time_intervals,
        )
        dashboard_url = dashboard_url_for(base_url)
        comparer = job_comparer(self.config.baseline, self._store, self.client, dashboard_url)
        shared = self._store.shared
        self.tracker = JobTracker(
            self._store, router=router, dashboard_url=dashboard_url, comparer=comparer, shared_rules=shared
        )
        self._session = session
        self.worker = build_worker(self.config, self._store, session, self.clock, self.store_health)
        self.gate = LeaseGate(self._store, self.tracker, self.clock, self.store_health) if shared else None
        self.cycle = PollCycle(
            watch=self.config.watch,
            client=self.client,
            tracker=self.tracker,
            clock=self.clock,
            health=self.health,
            on_notifications=self.worker.wake,
            on_snapshot=self.recorder.write if self.recorder is not None else None,
            gate=self.gate,
            store_health=self.store_health,
            sleep=self._sleep,
        )

    def _interval_s(self) -> float:
        return self.config.watch.poll_interval_ms / 1000

    def _start_scheduler(self) -> AsyncIOScheduler:
        scheduler = AsyncIOScheduler(timezone=UTC)
        interval_s = self._interval_s()
        scheduler.add_job(
            self.poll_once,
            "interval",
            seconds=interval_s,
            jitter=interval_s * self.config.watch.jitter or None,
            id=POLL_JOB,
            max_instances=1,  # a slow cycle is never started twice at once
            coalesce=True,  # runs missed meanwhile collapse into one
            misfire_grace_time=max(1, int(interval_s)),
            next_run_time=datetime.now(UTC),
        )
        flush = self._whole(self.flush_timers)
        scheduler.add_job(flush, "interval", seconds=1, id=TIMER_JOB, max_instances=1, coalesce=True)
        if self.gate is not None:  # leases renewed three times per TTL, whatever the poll interval
            heartbeat_s = self.config.state.lease_ttl_ms / 3000
            heartbeat = self._whole(self.heartbeat)
            scheduler.add_job(heartbeat, "interval", seconds=heartbeat_s, id=HEARTBEAT_JOB, coalesce=True)
        scheduler.add_listener(_log_scheduler_event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        scheduler.start()
        return scheduler

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

    def _whole(self, step: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        """`step` as a scheduler job that a stop waits for instead of cancelling it mid-transaction (APScheduler's
        shutdown cancels running jobs, and each such cancel was logged as a failure, with a traceback)."""
        lock = asyncio.Lock()
        self._step_locks.append(lock)

        async def run() -> None:
            async with lock:
                await step()

        return run

    async def poll_once(self) -> CycleReport:
        """One poll cycle (the scheduler's interval job); cycles never overlap."""
        async with self._cycle_lock:
            started = time.monotonic()
            try:
                await self.tracker.refresh_silences()
            except StoreError as exc:  # the database is away (told once by the cycle): the last ones stay in force
                log.warning("reading the runtime silences failed (%s); the previous ones stay", exc)
            except Exception:  # not the store: a bug, whose traceback is worth its lines
                log.warning("reading the runtime silences failed; the previous ones stay", exc_info=True)
            report = await self.cycle.run(spread_s=self._interval_s() * self.config.watch.spread)
            elapsed_s = time.monotonic() - started
            self._cycles += 1
            self._last_cycle_end_ms = self.clock.now_ms()
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
        """Replicas: renew the leases (the scheduler's TTL / 3 job); jobs it takes over from a dead replica are
        polled at once — they have waited a lease TTL already — unless a cycle is under way (it takes them)."""
        if self.gate is None:
            return
        await self.gate.heartbeat()
        if self.gate.has_fresh() and not self._cycle_lock.locked():
            async with self._cycle_lock:
                report = await self.cycle.poll_taken_over()
            self._count(report, None)

    async def flush_timers(self) -> None:
        """Close rule group windows that are due (the scheduler's 1-second job); replicas: only the one holding
        the timer claim flushes, from the rule state in the store."""
        now_ms = self.clock.now_ms()
        if not self.store_health.writable:
            return
        try:
            if self._store.shared:
                if not await self._store.claim_timers(now_ms):
                    return
            elif (due_ms := self.tracker.next_due_ms()) is None or due_ms > now_ms:
                return
            observation = await self.tracker.flush_due(now_ms)
        except StoreWriteError as exc:  # the windows stay open; flushed once the store writes again
            self.store_health.failed(self.clock.now_ms(), str(exc))
            return
        except StoreError as exc:  # the database is away: the timers are still due when it returns
            log.warning("flushing rule timers failed: %s", exc)
            return
        if observation.notifications:
            self.worker.wake()

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
        """Gauges read from the store and the worker, before a scrape."""
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
        return self.tracker.summaries()

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
        """The status page's trend window: `baseline.history` (its default without a `baseline:` section)."""
        baseline = self.config.baseline if self.config.baseline is not None else BaselineSection()
        return baseline.history

    def reload_soon(self) -> None:
        """Reload in the background (SIGHUP); a reload already under way is not started twice."""
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.create_task(self._reload_logged(), name="config reload")

    async def _reload_logged(self) -> list[str]:
        try:
            return await self.reload()
        except Exception:  # a signal handler's task: nobody else would see the error
            log.exception("reload failed; the running config stays")
            self.metrics.config_loaded(False, time.time())
            return ["reload failed unexpectedly (see the log)"]

    async def reload(self) -> list[str]:
        """Read the config again; a valid one applies from the next poll, an invalid one is refused (its
        problems returned and logged) and the running one stays."""
        if not hasattr(self, "cycle"):  # SIGHUP before `run` built the poll cycle
            log.warning("reload asked while the watcher is starting; ignored (ask again once it runs)")
            return ["the watcher is still starting; try again in a moment"]
        result = read_again(self.loaded.path)
        if result.loaded is None:
            self.metrics.config_loaded(False, time.time())
            return list(result.problems)
        redact_more(secrets_of(result.loaded.config))
        for setting in needs_restart(self.config, result.loaded.config):
            log.warning("reload: %s changed; that takes a restart (the old value stays until then)", setting)
        new = effective(self.config, result.loaded.config)
        async with self._cycle_lock:  # a cycle sees the old config or the new one, never half of each
            router = Router(new.rules, new.silences, inhibit=new.inhibit, time_intervals=new.time_intervals)
            await self.tracker.use_router(router)
            self.worker.use_notifiers(
                build_notifiers(new, self._store, self._session, self.clock), delivery_policies(new)
            )
            self.cycle.use_watch(new.watch)
            self.tracker.comparer = job_comparer(new.baseline, self._store, self.client, self.tracker.dashboard_url)
            self.health.unreachable_after_ms = new.watch.api_unreachable_after_ms
            self.loaded, self.config = LoadedConfig(new, result.loaded.path), new
        self.metrics.config_loaded(True, time.time())
        log.info("reloaded %s: %d rules, %d notifiers, %d silences", self.loaded.path, len(new.rules),
                 len(new.notifiers), len(new.silences))  # fmt: skip
        return []

    async def _shutdown(self, scheduler: AsyncIOScheduler, worker_task: asyncio.Task[None]) -> None:
        """Claim nothing new — no poll cycle, no send — and give the running cycle and the sends in flight one grace
        together (not one after the other: the process exits within STOP_GRACE_S and a second); then the endpoint."""
        log.info("stopping: no new poll cycles or sends; finishing what is under way (at most %.0fs)", STOP_GRACE_S)
        scheduler.pause()
        worker_stopped = asyncio.create_task(self.worker.stop(grace_s=STOP_GRACE_S), name="stop deliveries")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_GRACE_S):
                for lock in [self._cycle_lock, *self._step_locks]:
                    await lock.acquire()
        scheduler.shutdown(wait=False)
        await worker_stopped
        worker_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker_task

    async def _close_endpoints(self) -> None:
        """Last the status endpoint and the client."""
        if self.status is not None:
            await self.status.close()
            self.status = None
        await self.client.close()


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

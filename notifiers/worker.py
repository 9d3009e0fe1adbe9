"""The delivery worker: sends what the outbox holds — retries, rate limits, dead letters and bookkeeping, once.

Every notification reaches the outbox in the same transaction as the events that caused it, before any send. The
worker takes due ones, sends each through its notifier under that notifier's concurrency and rate limits, and
records every attempt. A notification stays pending until a successful send is recorded: after a crash it goes out
again (at least once; its id is the idempotency key receivers dedupe on), and only a send that was in flight at the
crash can arrive twice. Backoff delays are exponential with full jitter (drawn from the worker's own random
generator, seeded in tests), or the server's Retry-After; past the notifier's `max_age` a notification is
dead-lettered, kept and visible, sendable on demand.

Only a `StoreError` means the store cannot write (then nothing new is sent until it can). Any other exception while
sending or recording one notification is a bug of ours: it is logged with its traceback, that notification alone is
dead-lettered with reason `internal_error`, and every other one keeps flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from notifiers.protocol import Notifier, NotifierGoneError, RetryableSendError, SendError
from watcher.core.clock import Clock
from watcher.core.failures import Reason
from watcher.core.notification import Notification
from watcher.core.ratelimit import RateLimiter, Sleep
from watcher.core.records import DeliveryAttempt, DeliveryOutcome, OutboxItem, OutboxLook, OutboxStatus
from watcher.core.storehealth import StoreError, StoreHealth

log = logging.getLogger("benchwatch.delivery")

_MAX_ERROR_CHARS = 500
_MAX_DOUBLINGS = 64  # past this many the cap has long been reached: no float overflow however many attempts
DUE_BATCH = 200  # due notifications read per dispatch
RECORD_RETRY_S = 1.0  # while the store cannot write: how often the held records are tried again
# With nothing due, how often the worker looks anyway. A replica's heartbeat looks for it every lease TTL / 3
# (`looked`): another replica's commit does not wake this worker (that replica's own worker sends it), and what a
# dead replica left is found by that look.
IDLE_LOOK_S = 60.0
# Sends made whose record is not written yet, at most: a send's record is written once its notifier slot is free,
# with the others finishing meanwhile in one commit (the store's group commit) — one transaction per send capped a
# first pass at a few hundred a second. This many sends are all a crash (or a store that stops writing) can leave
# made but unrecorded, beside the notifiers' sends in flight.
RECORD_WINDOW = 32
_OUTCOME_OF: Final = {
    OutboxStatus.SENT: DeliveryOutcome.SENT,
    OutboxStatus.DEAD: DeliveryOutcome.DEAD,
    OutboxStatus.PENDING: DeliveryOutcome.RETRY,
}


class Outbox(Protocol):
    """What the worker needs of the store: due notifications, and the record of each attempt."""

    async def due_notifications(
        self, now_ms: int, *, limit: int = 200, exclude: Collection[str] = ()
    ) -> list[OutboxItem]:
        """Pending notifications whose next attempt is due."""
        ...

    async def next_attempt_ms(self, *, after_ms: int = -1) -> int | None:
        """When the next pending notification is due (later than `after_ms`)."""
        ...

    async def record_delivery(self, attempt: DeliveryAttempt, *, status: OutboxStatus, next_attempt_ms: int) -> None:
        """Record an attempt and the notification's new status atomically."""
        ...


class _SetApart(Exception):
    """Raised past the caller of `_finish` once the notification was dead-lettered as `internal_error`: what the
    caller meant to do next (log a retry, say it was delivered) no longer holds."""


@dataclass(frozen=True)
class _Held:
    """An attempt made whose record the store could not write yet."""

    attempt: DeliveryAttempt
    status: OutboxStatus
    next_attempt_ms: int


@dataclass(frozen=True)
class DeliveryPolicy:
    """One notifier's delivery limits."""

    max_age_ms: int = 24 * 3_600_000
    concurrency: int = 4
    rate_per_s: float | None = None
    initial_backoff_s: float = 2.0
    max_backoff_s: float = 900.0


class DeliveryWorker:
    """Sends due notifications from the store's outbox; one notifier that is down never holds back another."""

    def __init__(
        self,
        store: Outbox,
        notifiers: Mapping[str, Notifier],
        policies: Mapping[str, DeliveryPolicy],
        *,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        health: StoreHealth | None = None,
        record_window: int = RECORD_WINDOW,
        idle_look_s: float = IDLE_LOOK_S,
    ) -> None:
        self.store = store
        self.notifiers = dict(notifiers)
        self.policies = dict(policies)
        self.clock = clock
        self.stats: Counter[tuple[str, str, str]] = Counter()  # (notifier, outcome, reason)
        self.disabled: dict[str, str] = {}  # notifier → why (HTTP 410)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._limits = {name: asyncio.Semaphore(self._policy(name).concurrency) for name in self.notifiers}
        self._rates = {name: RateLimiter(self._policy(name).rate_per_s, clock, sleep) for name in self.notifiers}
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._backlog = False  # the last dispatch left due notifications behind (it reads DUE_BATCH at most)
        self._wake = asyncio.Event()
        self._stopping = False
        self.health = health or StoreHealth()
        self._read_failed = False  # the last look at the outbox failed (the store was away)
        # Attempts made but not recorded (the store could not write). While any is held nothing new is claimed: a
        # send whose "sent" is not recorded would go out again after a restart, so its record comes first.
        self._unrecorded: dict[str, _Held] = {}
        # Sends made whose record is being written (RECORD_WINDOW at most); told when one is written, or held.
        self._recording = 0
        self._record_window = record_window
        self._idle_look_s = idle_look_s  # with nothing due, the worker looks again this often anyway
        # The next due time after the last look at it (None: nothing pending later), and when it was read.
        self._later: tuple[int | None, int] | None = None
        self._waiting_until_ms: int | None = None  # while the worker waits: when its wait ends at the latest
        # Sends finished since the heartbeat's last look (`looked`); None until the first: no heartbeat looks.
        self._finished: set[str] | None = None
        self._recorded = asyncio.Condition()
        # Notifications hit by a bug that could not even be dead-lettered: left pending, never taken again here.
        self._quarantined: dict[str, str] = {}
        self._read_bug: str | None = None  # the last unexpected error reading the outbox (logged once)

    def use_notifiers(self, notifiers: Mapping[str, Notifier], policies: Mapping[str, DeliveryPolicy]) -> None:
        """Deliver through these notifiers from the next send on (a config reload); sends in flight finish with
        the old ones. A notifier disabled by a 410 is enabled again: the reload may have fixed its address."""
        self.notifiers = dict(notifiers)
        self.policies = dict(policies)
        self.disabled = {}
        self._limits = {name: asyncio.Semaphore(self._policy(name).concurrency) for name in self.notifiers}
        self._rates = {name: RateLimiter(self._policy(name).rate_per_s, self.clock, self._sleep) for name in notifiers}

    @property
    def idle(self) -> bool:
        """No send in flight right now."""
        return not self._in_flight

    @property
    def unrecorded(self) -> int:
        """Attempts made whose record the store could not write yet (held, and tried again)."""
        return len(self._unrecorded)

    def wake(self) -> None:
        """New notifications are in the outbox: look now rather than at the next due time."""
        self._wake.set()

    async def dispatch(self) -> int:
        """Start a send for every due notification not already in flight; returns how many were started. Nothing
        is started while an earlier attempt's record is held (the store could not write it) or after `stop()`."""
        if self._stopping or not await self.record_held():
            return 0
        started = 0
        exclude = (*self._in_flight, *self._quarantined)
        due = await self.store.due_notifications(self.clock.now_ms(), limit=DUE_BATCH, exclude=exclude)
        self._backlog = len(due) >= DUE_BATCH
        for item in due:
            started += self._start(item)
        return started

    def has_room(self) -> bool:
        """Whether notifications this process commits now should be claimed for this worker and handed over
        (`take`, PostgreSQL): while it would start them at once and has fewer than DUE_BATCH sends under way — as
        many as a dispatch claims. Else they are left unclaimed, and its next dispatch reads them: claims beyond
        what it sends soon would only wait, renewed every heartbeat, and go to another replica as `interrupted`
        if this one died."""
        if not self._starts_now():
            return False
        if len(self._in_flight) >= DUE_BATCH:
            self._backlog = True  # left unclaimed: a send that ends reads on (`_forget`)
            return False
        return True

    def take(self, items: Sequence[OutboxItem]) -> None:
        """Notifications this process committed and claimed for this worker in the same transaction (PostgreSQL's
        `listen(taker=...)`, while it had room): sent as a dispatch would, without reading them back. Left in the
        outbox for a dispatch to find (this worker's claims) if meanwhile it would not start them in order: a
        backlog not read yet (they would overtake it), a record held, a look at the outbox failing, a stop."""
        if not self._starts_now():
            self._wake.set()
            return
        for item in items:
            if item.notification.id not in self._quarantined:
                self._start(item)

    def _starts_now(self) -> bool:
        """Whether a notification handed over would be started at once, in order: no stop, no record held, the
        outbox readable, no backlog read yet (it would overtake it)."""
        return not (self._stopping or self._unrecorded or self._read_failed or self._backlog)

    def _start(self, item: OutboxItem) -> int:
        """A send for `item` unless one is in flight (or the worker stops); returns how many were started."""
        notification_id = item.notification.id
        if notification_id in self._in_flight or self._stopping:
            return 0
        task = asyncio.create_task(self._deliver(item), name=f"deliver {notification_id}")
        self._in_flight[notification_id] = task
        task.add_done_callback(functools.partial(self._forget, notification_id))
        return 1

    def looked(self, look: OutboxLook) -> None:
        """What a replica's heartbeat saw of the outbox, every lease TTL / 3 in its own round trip: this worker's
        look, where its own cost a claim and a read of the next due time every lease TTL (a transaction a second
        of every replica at rest, with the benchmark's 2-s TTL). It dispatches now if something is due that it is
        not sending — a notification nobody claims, one whose claim expired (its replica died), or one it claimed
        and has not started (left for a look: see `take`; committed by a COMMIT whose answer never came) — and
        otherwise waits until the next due time seen, if that comes before its wait would end."""
        now_ms = self.clock.now_ms()
        finished, self._finished = self._finished or set(), set()
        busy = self._in_flight.keys() | finished | self._quarantined.keys() | self._unrecorded.keys()
        due_ms = look.next_due_ms
        if self._later is not None:  # else dropped by a retry of its own, which this look may predate: read again
            self._later = (due_ms, now_ms)
        if not look.claimed <= busy or (due_ms is not None and due_ms <= now_ms):
            self._wake.set()
        elif due_ms is not None and self._waiting_until_ms is not None and due_ms < self._waiting_until_ms:
            self._wake.set()  # its wait ends too late: a look now, and the wait from the new reading

    def _forget(self, notification_id: str, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(notification_id, None)
        if self._finished is not None:  # claimed until its record: the heartbeat may have seen it claimed
            self._finished.add(notification_id)
        if not task.cancelled() and task.exception() is not None:  # retrieved: never "exception was never retrieved"
            log.error("delivering %s failed unexpectedly", notification_id, exc_info=task.exception())
        if self._backlog:  # a slot is free and more is due than was read: read on
            self._wake.set()

    async def drain(self) -> int:
        """Dispatch and wait until nothing due is left (for tests and one-shot runs); returns sends started."""
        total = 0
        while True:
            started = await self.dispatch()
            total += started
            if not self._in_flight:
                return total
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    async def run(self) -> None:
        """Dispatch until `stop()`: woken by `wake()`, by the next due time, by a send rescheduled, or by a send
        finishing while more is due than the last dispatch read."""
        while not self._stopping:
            self._wake.clear()
            try:
                await self.dispatch()
                if self._read_failed:  # the outbox reads again: the outage this worker saw is over
                    self._read_failed = False
                    self._store_recovered()
                if self._unrecorded:  # the store cannot write: try the held records again shortly
                    await self._pause(RECORD_RETRY_S)
                    continue
                await self._wait_for_work()
            except StoreError as exc:  # the store cannot even be read: the worker waits, it does not die
                self._read_failed = True
                self._store_failed(f"reading the outbox: {exc}")
                await self._pause(RECORD_RETRY_S)
            except Exception as exc:  # not the store: a bug, told once with its traceback; the worker goes on
                if repr(exc) != self._read_bug:
                    self._read_bug = repr(exc)
                    log.exception("looking for due notifications failed unexpectedly (not the store)")
                await self._pause(RECORD_RETRY_S)

    async def stop(self, grace_s: float = 10.0) -> None:
        """Claim nothing new; let sends in flight finish and be recorded for up to `grace_s`, then cancel the rest
        (those may go out again after a restart: the documented in-flight window)."""
        self._stopping = True
        self._wake.set()
        async with self._recorded:  # sends waiting for room to record stop waiting: nothing new starts
            self._recorded.notify_all()
        deadline_ms = self.clock.now_ms() + grace_s * 1000
        pending = list(self._in_flight.values())
        if pending:
            _, not_done = await asyncio.wait(pending, timeout=grace_s)
            for task in not_done:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*not_done, return_exceptions=True)
            if not_done:
                log.warning("stopped with %d sends unfinished; they stay pending and go out again", len(not_done))
        while self._unrecorded and not await self.record_held():
            remaining_s = (deadline_ms - self.clock.now_ms()) / 1000
            if remaining_s <= 0:
                break
            await self._sleep(min(RECORD_RETRY_S, remaining_s))
        if self._unrecorded:
            log.error(
                "stopped with %d sends made but not recorded (%s); they will be sent again after a restart",
                len(self._unrecorded), self.health.last_error,
            )  # fmt: skip

    async def record_held(self) -> bool:
        """Try again to record the attempts the store could not write; True once none is held."""
        if not self._unrecorded:
            return True  # nothing written, so nothing learnt about the store: no "writes again" without a write
        for notification_id, held in list(self._unrecorded.items()):
            try:
                await self.store.record_delivery(held.attempt, status=held.status, next_attempt_ms=held.next_attempt_ms)
            except StoreError as exc:
                self._store_failed(str(exc))
                return False
            except Exception:  # this record, not the store: it alone is set apart
                log.exception("recording the held attempt of %s failed unexpectedly (not the store)", notification_id)
                self._quarantined[notification_id] = "its held record failed unexpectedly"
                del self._unrecorded[notification_id]
                continue
            del self._unrecorded[notification_id]
            self._count(held.attempt)
            self._later = None  # a held retry may be due later than the last reading knew
        self._store_recovered()
        return True

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()

    def _store_failed(self, error: str) -> None:
        if self.health.failed(self.clock.now_ms(), error):
            log.error(
                "the state store cannot write (%s): no new sends until it can; %d sends held for recording, "
                "retried every %.0fs (logged once a minute)",
                error, len(self._unrecorded), RECORD_RETRY_S,
            )  # fmt: skip

    def _store_recovered(self) -> None:
        down_ms = self.health.succeeded(self.clock.now_ms())
        if down_ms is not None:
            log.warning("the state store writes again after %.0fs; sending resumes", down_ms / 1000)

    async def _wait_for_work(self) -> None:
        if self._wake.is_set():  # woken while dispatching: look again at once, the next due time can wait
            return
        now_ms = self.clock.now_ms()
        next_ms = await self._next_due_ms(now_ms)
        due_s = self._idle_look_s if next_ms is None else max(0.0, (next_ms - now_ms) / 1000)
        timeout_s = min(due_s, self._idle_look_s)
        self._waiting_until_ms = now_ms + int(timeout_s * 1000)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout_s)
        finally:
            self._waiting_until_ms = None

    async def _next_due_ms(self, now_ms: int) -> int | None:
        """The next due time after now (what is due now is in flight already): as last read while it still lies
        ahead and the reading is younger than an idle look, else read again.

        New notifications wake the worker, are due at once and are claimed by the dispatch that the wake-up runs:
        they do not move the next due time, and reading it again after each cost a transaction per wake-up — a
        quarter of a replica's transactions while jobs changed. What moves it is known here (this worker's own
        retries: `_failed` forgets the reading) or found by the next look: another replica's retries, which it
        sends itself, and claims of a dead replica that expire (its jobs' takeover also wakes this worker)."""
        if self._later is not None:
            later_ms, read_ms = self._later
            if (later_ms is None or later_ms > now_ms) and 0 <= now_ms - read_ms < self._idle_look_s * 1000:
                return later_ms
        later_ms = await self.store.next_attempt_ms(after_ms=now_ms)
        self._later = (later_ms, now_ms)
        return later_ms

    def _policy(self, notifier: str) -> DeliveryPolicy:
        return self.policies.get(notifier, DeliveryPolicy())

    async def _deliver(self, item: OutboxItem) -> None:
        try:
            await self._deliver_one(item)
        except _SetApart:
            return
        except Exception as exc:  # a bug while delivering this one notification: it alone is dead-lettered
            await self._internal_error(item, exc, "delivering it")

    async def _deliver_one(self, item: OutboxItem) -> None:
        notification = item.notification
        name = notification.notifier
        notifier = self.notifiers.get(name)
        if notifier is None:
            await self._finish(
                item, OutboxStatus.DEAD, Reason.CLIENT_ERROR, f"no notifier named {name!r} in the config"
            )
            return
        async with self._limits[name]:
            if self._stopping or self._unrecorded:  # queued for the slot, but nothing new starts now: stays pending
                return
            if name in self.disabled:  # checked in turn: sends queued behind the one that found it gone stop too
                why = f"notifier {name!r} is disabled: {self.disabled[name]}"
                await self._finish(item, OutboxStatus.DEAD, Reason.CLIENT_ERROR, why)
                return
            if not await self._room_to_record():  # a record failed meanwhile, or a stop: stays pending
                return
            await self._rates[name].wait_turn()
            if self._stopping:
                return
            started_ms = self.clock.now_ms()
            try:
                await notifier.send(notification)
            except asyncio.CancelledError:  # a stop past its grace: the send may have arrived, and says so
                await self._interrupted(item, started_ms)
                raise
            except SendError as exc:
                await self._failed(item, exc, started_ms)
                return
            except StoreError as exc:  # the notifier's own state (thread ids) could not be read or written: try again
                error = RetryableSendError(f"the state store failed: {exc}", reason=Reason.SERVER_ERROR)
                await self._failed(item, error, started_ms)
                return
            except Exception as exc:  # a notifier bug: this notification is dead-lettered, the others go on
                await self._internal_error(item, exc, f"sending it through notifier {name!r}", started_ms=started_ms)
                return
            self._recording += 1
        # Recorded once the slot is free: the record joins those of the sends finishing meanwhile in one commit.
        # Sends made but not yet recorded (those a crash would repeat) are the notifier's in flight plus at most
        # RECORD_WINDOW being recorded; on PostgreSQL each stays claimed until recorded, so a replica that takes it
        # over records it as interrupted.
        try:
            await self._finish(item, OutboxStatus.SENT, None, None, started_ms=started_ms)
        finally:
            async with self._recorded:
                self._recording -= 1
                self._recorded.notify_all()
        log.info("delivered %s to %s (rule %s)", notification.id, name, notification.rule, extra=_about(notification))

    async def _room_to_record(self) -> bool:
        """Wait until fewer than RECORD_WINDOW sends are being recorded; False if meanwhile a record could not be
        written (nothing new starts until it is) or the worker is stopping."""
        async with self._recorded:
            await self._recorded.wait_for(
                lambda: self._recording < self._record_window or bool(self._unrecorded) or self._stopping
            )
        return not (self._unrecorded or self._stopping)

    async def _failed(self, item: OutboxItem, exc: SendError, started_ms: int) -> None:
        name = item.notification.notifier
        message = str(exc)[:_MAX_ERROR_CHARS]
        if isinstance(exc, NotifierGoneError):
            self.disabled[name] = message
            log.error("notifier %s is gone and now disabled: %s", name, message)
        finish = functools.partial(self._finish, item, started_ms=started_ms, http_status=exc.http_status)
        if not exc.retryable:
            await finish(OutboxStatus.DEAD, exc.reason, message)
            log.error(
                "dead-lettered %s to %s: %s (%s)", item.notification.id, name, message, exc.reason,
                extra=_about(item.notification),
            )  # fmt: skip
            return
        delay_s = self._delay_s(item, exc)
        now_ms = self.clock.now_ms()
        next_ms = now_ms + round(delay_s * 1000)
        if next_ms > item.notification.created_ms + self._policy(name).max_age_ms:
            await finish(OutboxStatus.DEAD, exc.reason, f"{message} (gave up after {item.attempts + 1} attempts)")
            log.error(
                "dead-lettered %s to %s after %d attempts: %s", item.notification.id, name, item.attempts + 1, message,
                extra=_about(item.notification),
            )  # fmt: skip
            return
        await finish(OutboxStatus.PENDING, exc.reason, message, next_attempt_ms=next_ms)
        self._later = None  # the next due time moved: read again, and the worker's wait takes it into account
        self._wake.set()
        log.warning(
            "delivery of %s to %s failed (%s): %s; attempt %d, next in %.1fs",
            item.notification.id, name, exc.reason, message, item.attempts + 1, delay_s,
            extra=_about(item.notification),
        )  # fmt: skip

    def _delay_s(self, item: OutboxItem, exc: SendError) -> float:
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after is not None:
            return max(0.0, float(retry_after))
        return self._backoff_s(self._policy(item.notification.notifier), item.attempts + 1)

    def _backoff_s(self, policy: DeliveryPolicy, attempt: int) -> float:
        """Full jitter: anywhere from 0 to `initial_backoff_s` × 2^(attempt − 1), capped at `max_backoff_s` — so
        notifications failing together do not come back together."""
        ceiling_s = min(policy.max_backoff_s, policy.initial_backoff_s * 2.0 ** min(attempt - 1, _MAX_DOUBLINGS))
        return self._rng.uniform(0.0, ceiling_s)

    async def _finish(
        self,
        item: OutboxItem,
        status: OutboxStatus,
        reason: str | None,
        error: str | None,
        *,
        started_ms: int | None = None,
        next_attempt_ms: int = 0,
        http_status: int | None = None,
    ) -> None:
        now_ms = self.clock.now_ms()
        outcome = _OUTCOME_OF[status]
        attempt = DeliveryAttempt(
            notification_id=item.notification.id,
            notifier=item.notification.notifier,
            attempt=item.attempts + 1,
            started_ms=started_ms if started_ms is not None else now_ms,
            finished_ms=now_ms,
            outcome=outcome,
            reason=reason,
            error=error,
            http_status=http_status,
        )
        try:
            await self.store.record_delivery(attempt, status=status, next_attempt_ms=next_attempt_ms)
        except StoreError as exc:  # the store cannot write: hold the record, never send this again meanwhile
            self._unrecorded[attempt.notification_id] = _Held(attempt, status, next_attempt_ms)
            self._store_failed(str(exc))
            return
        except Exception as exc:  # this record, not the store (its error text will not encode, a bug): set apart
            if reason == Reason.INTERNAL_ERROR:
                raise  # the dead letter itself: `_internal_error` sets the notification apart
            await self._internal_error(item, exc, f"recording its {outcome} attempt", started_ms=started_ms)
            raise _SetApart from exc
        self._count(attempt)

    async def _internal_error(
        self, item: OutboxItem, exc: Exception, doing: str, *, started_ms: int | None = None
    ) -> None:
        """A bug while delivering one notification: logged with its traceback, the notification dead-lettered
        (`internal_error`); if even that cannot be recorded, it stays pending and this worker never takes it again."""
        notification = item.notification
        log.error(
            "%s failed unexpectedly for %s (a bug, not the store): dead-lettered as internal_error; the others go on",
            doing, notification.id, exc_info=exc, extra=_about(notification),
        )  # fmt: skip
        error = f"internal error {doing}: {type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
        try:
            await self._finish(item, OutboxStatus.DEAD, Reason.INTERNAL_ERROR, error, started_ms=started_ms)
        except Exception:
            self._quarantined[notification.id] = error
            log.exception(
                "dead-lettering %s failed too: it stays pending and is not taken again until benchwatch restarts",
                notification.id,
            )

    async def _interrupted(self, item: OutboxItem, started_ms: int) -> None:
        """Record a send cut off by a stop as `interrupted` (the notification stays pending): without it the attempt
        log showed none (`attempts=0`), though the receiver may have had it. Not counted in the metrics, as the
        takeovers' `interrupted` attempts are not."""
        now_ms = self.clock.now_ms()
        attempt = DeliveryAttempt(
            notification_id=item.notification.id,
            notifier=item.notification.notifier,
            attempt=item.attempts + 1,
            started_ms=started_ms,
            finished_ms=now_ms,
            outcome=DeliveryOutcome.INTERRUPTED,
            reason="stopped",
            error="the watcher stopped with this send in flight; it may have arrived",
        )
        try:
            await self.store.record_delivery(attempt, status=OutboxStatus.PENDING, next_attempt_ms=now_ms)
        except Exception as exc:  # the store cannot write: the send stays pending unrecorded, as before
            log.warning("recording the interrupted send of %s failed: %s", item.notification.id, exc)

    def _count(self, attempt: DeliveryAttempt) -> None:
        self.stats[(attempt.notifier, attempt.outcome, attempt.reason or "ok")] += 1


def _about(notification: Notification) -> dict[str, str | None]:
    """The fields a JSON log line of a delivery carries: which notification, for which job."""
    return {"notification_id": notification.id, "job_id": notification.job_id, "rule": notification.rule}

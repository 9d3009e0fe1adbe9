"""Async client of the Runloop benchmark API: one aiohttp session, retries through tenacity, typed errors.

Importing it costs aiohttp and tenacity, not pydantic: the API models and their decoders are imported where a
typed method first needs them, so `benchwatch wait` sends its first (raw) request before loading them (see
docs/performance.md, "Start-up").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar
from urllib.parse import quote, urlencode

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential
from yarl import URL

from watcher.api.errors import (
    AuthError,
    ClientRequestError,
    MalformedResponseError,
    NotFoundError,
    RunloopApiError,
    SchemaError,
    TransientApiError,
)
from watcher.api.rejects import RejectReporter
from watcher.core.clock import Clock, MonotonicClock, SystemClock
from watcher.core.failures import Reason, classify_status, parse_retry_after
from watcher.core.ratelimit import RateLimiter

if TYPE_CHECKING:
    from pydantic import BaseModel

    from watcher.api.listing import JobListPage, ListedJob, ListedPage
    from watcher.api.rejects import RejectedJob
    from watcher.core.models import (
        BenchmarkJobView,
        BenchmarkRunView,
        ScenarioRunListView,
        ScenarioRunView,
    )

log = logging.getLogger("benchwatch.client")

DEFAULT_BASE_URL = "https://api.runloop.ai"
MAX_PAGE_SIZE = 5000
_ERROR_EXCERPT_CHARS = 200

ModelT = TypeVar("ModelT", bound="BaseModel")
T = TypeVar("T")
_LAST_PAGE = re.compile(rb'"has_more"\s*:\s*false')
Sleep = Callable[[float], Awaitable[None]]


class SecretText(Protocol):
    """A secret that says itself only when asked (pydantic's `SecretStr`, or `HiddenKey`)."""

    def get_secret_value(self) -> str:
        """The secret itself."""
        ...


T_co = TypeVar("T_co", covariant=True)


class _ListPage(Protocol[T_co]):
    """A page of a list endpoint as `_each_listed` reads it."""

    @property
    def jobs(self) -> tuple[T_co, ...]: ...
    @property
    def rejected(self) -> tuple[RejectedJob, ...]: ...
    @property
    def has_more(self) -> bool: ...
    @property
    def last_id(self) -> str | None: ...


class HiddenKey:
    """An API key kept out of reprs and tracebacks' locals."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        """The key itself."""
        return self._value

    def __repr__(self) -> str:
        return "HiddenKey('**********')"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the client tries before it gives up on a call.

    Waits grow exponentially with full jitter up to `max_backoff_s`; a server's `Retry-After` /
    `retry-after-ms` is honoured up to `max_retry_after_s`. A call stops after `max_attempts`, or earlier
    when the next wait would take the total time spent waiting past `max_total_wait_s`.
    """

    max_attempts: int = 6
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 60.0
    max_total_wait_s: float = 120.0


@dataclass(frozen=True)
class RequestLimits:
    """Caps on the load towards the API: requests in flight at once, and started per second."""

    max_concurrent: int = 8
    max_per_s: float | None = 20.0


@dataclass(frozen=True)
class Timeouts:
    """Per-request time limits, in seconds."""

    total_s: float = 30.0
    connect_s: float = 5.0

    def as_aiohttp(self) -> aiohttp.ClientTimeout:
        """The equivalent aiohttp timeout."""
        return aiohttp.ClientTimeout(total=self.total_s, connect=self.connect_s)


class RunloopClient:
    """Reads benchmark jobs, runs and scenario runs from the Runloop API (or the simulator).

    Pass `session` to share one aiohttp session with the rest of the process; otherwise the client
    opens its own and closes it in `close()`. `sleep` and `clock` are injectable so tests never wait.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | SecretText | None = None,
        session: aiohttp.ClientSession | None = None,
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        limits: RequestLimits = RequestLimits(),
        sleep: Sleep = asyncio.sleep,
        clock: Clock | None = None,
    ) -> None:
        self.base_url = (base_url or os.environ.get("RUNLOOP_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("RUNLOOP_API_KEY")
        self._api_key: SecretText | None = HiddenKey(key) if isinstance(key, str) else key
        self._session = session
        self._owns_session = session is None
        self.timeouts = timeouts
        self._timeout = timeouts.as_aiohttp()  # built once: a request only reads it
        self.retry = retry
        self._sleep = sleep
        self._clock = clock or SystemClock()
        self._in_flight = asyncio.Semaphore(limits.max_concurrent)
        # Pacing is about real load on the API: real time, whatever clock and sleep the retries were given.
        self._pace = RateLimiter(limits.max_per_s, MonotonicClock(), asyncio.sleep)
        self.requests_made = 0
        self.bytes_received = 0
        self.rejects = RejectReporter()
        self._listed: _LastDecoded[ListedPage] | None = None

    def __repr__(self) -> str:
        key_state = "set" if self._api_key else "missing"
        return f"RunloopClient(base_url={self.base_url!r}, api_key=<{key_state}>)"

    async def __aenter__(self) -> RunloopClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client opened it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- endpoints -------------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> BenchmarkJobView:
        """`GET /v1/benchmark_jobs/{id}`."""
        from watcher.core.models import BenchmarkJobView

        return await self._get(f"/v1/benchmark_jobs/{_path_part(job_id)}", None, _model(BenchmarkJobView))

    async def list_jobs(
        self,
        *,
        name: str | None = None,
        search: str | None = None,
        limit: int | None = None,
        starting_after: str | None = None,
        include_total_count: bool = False,
    ) -> JobListPage:
        """One page of `GET /v1/benchmark_jobs`, newest first; a malformed item is set apart, not raised."""
        params = _params(
            name=name,
            search=search,
            limit=limit,
            starting_after=starting_after,
            include_total_count=include_total_count,
        )
        from watcher.api.listing import decode_job_list  # pydantic: not before the first request (docs/performance.md)

        return await self._get("/v1/benchmark_jobs", params, decode_job_list)

    async def iter_jobs(
        self, *, name: str | None = None, search: str | None = None, page_size: int = 1000
    ) -> AsyncGenerator[BenchmarkJobView, None]:
        """Every job matching the filters, newest first, fetching pages as the caller consumes them.

        A malformed item is skipped and logged once (with its id): it must not hide the other jobs."""

        async def page(cursor: str | None) -> JobListPage:
            return await self.list_jobs(name=name, search=search, limit=page_size, starting_after=cursor)

        async with contextlib.aclosing(self._each_listed(page)) as jobs:
            async for job in jobs:
                yield job

    async def iter_listed(self, *, page_size: int = 1000) -> AsyncGenerator[ListedJob, None]:
        """Every job, newest first, read as far as its head (`ListedJob.view()` reads the rest): for discovery,
        which needs the whole of the new jobs only. A malformed item is skipped and logged once, as by
        `iter_jobs`; a job whose head reads but whose whole does not is the caller's to report (`rejects`)."""
        from watcher.api.listing import decode_listed  # pydantic: not before the first request

        if self._listed is None:
            self._listed = _LastDecoded(decode_listed)
        decode = self._listed

        async def page(cursor: str | None) -> ListedPage:
            params = _params(limit=page_size, starting_after=cursor, include_total_count=False)
            return await self._get("/v1/benchmark_jobs", params, decode)

        async with contextlib.aclosing(self._each_listed(page)) as jobs:
            async for job in jobs:
                yield job

    async def _each_listed(self, page_of: Callable[[str | None], Awaitable[_ListPage[T]]]) -> AsyncGenerator[T, None]:
        """The items of every page `page_of(cursor)` returns, from the first (cursor None) on; the items set apart
        as malformed are reported (once each), and a cursor that does not move ends the listing."""
        cursor: str | None = None
        while True:
            page = await page_of(cursor)
            for rejected in page.rejected:
                self.rejects.report(rejected)
            for job in page.jobs:
                yield job
            if not page.has_more or page.last_id is None or page.last_id == cursor:
                return
            cursor = page.last_id

    async def get_run(self, run_id: str) -> BenchmarkRunView:
        """`GET /v1/benchmark_runs/{id}`."""
        from watcher.core.models import BenchmarkRunView

        return await self._get(f"/v1/benchmark_runs/{_path_part(run_id)}", None, _model(BenchmarkRunView))

    async def list_scenario_runs(
        self,
        run_id: str,
        *,
        state: str | None = None,
        limit: int | None = None,
        starting_after: str | None = None,
        include_total_count: bool = False,
    ) -> ScenarioRunListView:
        """One page of `GET /v1/benchmark_runs/{id}/scenario_runs`."""
        from watcher.core.models import ScenarioRunListView

        params = _params(
            state=state, limit=limit, starting_after=starting_after, include_total_count=include_total_count
        )
        path = f"/v1/benchmark_runs/{_path_part(run_id)}/scenario_runs"
        return await self._get(path, params, _model(ScenarioRunListView))

    async def iter_scenario_runs(
        self, run_id: str, *, state: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> AsyncIterator[ScenarioRunView]:
        """Every scenario run of a benchmark run, page by page."""
        cursor: str | None = None
        while True:
            page = await self.list_scenario_runs(run_id, state=state, limit=page_size, starting_after=cursor)
            for run in page.runs:
                yield run
            if not page.has_more or not page.runs or page.runs[-1].id == cursor:
                return
            cursor = page.runs[-1].id

    # -- transport -------------------------------------------------------------------------------

    async def get_job_raw(self, job_id: str) -> bytes:
        """`GET /v1/benchmark_jobs/{id}`, the body unparsed: a caller that hashes it first parses only changes."""
        return await self._get(f"/v1/benchmark_jobs/{_path_part(job_id)}", None, _raw)

    async def scenario_runs_raw(self, run_id: str) -> list[bytes]:
        """Every page of a run's scenario runs, unparsed (a page is parsed only to find the next cursor)."""
        from watcher.api.decode import decode_page

        path = f"/v1/benchmark_runs/{_path_part(run_id)}/scenario_runs"
        pages: list[bytes] = []
        cursor: str | None = None
        while True:
            params = _params(limit=MAX_PAGE_SIZE, starting_after=cursor, include_total_count=False)
            body = await self._get(path, params, _raw)
            pages.append(body)
            if _LAST_PAGE.search(body[-256:]):
                return pages
            page = decode_page(path, body)
            if not page.has_more or not page.runs or page.runs[-1].id == cursor:
                return pages
            cursor = page.runs[-1].id

    async def _get(self, path: str, params: dict[str, str] | None, decode: Callable[[str, bytes], T]) -> T:
        # Nearly every request succeeds at once: the retry machinery is built only for one that did not (building
        # it for each request was 7–14 % of a poll cycle's CPU).
        try:
            return await self._get_once(path, params, decode)
        except RunloopApiError as exc:
            if not exc.retryable:
                raise
            failure = exc
        return await self._retried(failure, path, params, decode)

    async def _retried(
        self, failure: RunloopApiError, path: str, params: dict[str, str] | None, decode: Callable[[str, bytes], T]
    ) -> T:
        """The attempts after a retryable first failure, which counts as attempt 1 of the retry policy."""
        first: RunloopApiError | None = failure

        async def attempt() -> T:
            nonlocal first
            if first is not None:
                exc, first = first, None
                raise exc
            return await self._get_once(path, params, decode)

        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, RunloopApiError) and exc.retryable),
            wait=self._wait_s,
            stop=self._should_stop,
            sleep=self._sleep,
            before_sleep=lambda state: _log_retry(path, state, self.retry.max_attempts),
            reraise=True,
        )
        result: T = await retrying(attempt)
        return result

    async def _get_once(self, path: str, params: dict[str, str] | None, decode: Callable[[str, bytes], T]) -> T:
        async with self._in_flight:
            await self._pace.wait_turn()
            self.requests_made += 1
            body = await self._exchange(path, params)
        return decode(path, body)

    async def _exchange(self, path: str, params: dict[str, str] | None) -> bytes:
        session = self._ensure_session()
        headers = {"Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        try:
            # encoded=True: the path is quoted already, and yarl would otherwise decode %2E and drop the dot segments;
            # the query too (aiohttp merging a `params` mapping into the URL was a tenth of a request's CPU).
            query = f"?{urlencode(params, quote_via=quote)}" if params else ""
            url = URL(self.base_url + path + query, encoded=True)
            async with session.get(url, headers=headers, timeout=self._timeout) as response:
                body = await response.read()
                status, response_headers = response.status, response.headers
        except TimeoutError as exc:
            raise TransientApiError(f"GET {path}: timed out", reason=Reason.TIMEOUT) from exc
        except aiohttp.ClientPayloadError as exc:
            raise TransientApiError(f"GET {path}: truncated response body", reason=Reason.CONNECTION) from exc
        except aiohttp.ClientError as exc:
            raise TransientApiError(
                f"GET {path}: cannot reach {self.base_url} ({type(exc).__name__})", reason=Reason.CONNECTION
            ) from exc
        if status >= 300:
            raise self._status_error(path, status, response_headers, body)
        self.bytes_received += len(body)
        return body

    def _status_error(self, path: str, status: int, headers: Mapping[str, str], body: bytes) -> RunloopApiError:
        reason, retryable = classify_status(status)
        excerpt = self._excerpt(body)
        if reason == Reason.AUTH:
            cause = "is not set" if self._api_key is None else "was rejected (invalid, or lacks benchmark access)"
            return AuthError(
                f"GET {path}: HTTP {status}: the Runloop API key {cause}; set RUNLOOP_API_KEY", status=status
            )
        if reason == Reason.NOT_FOUND:
            return NotFoundError(f"GET {path}: not found (HTTP 404)", status=status)
        if retryable:
            retry_after_s = parse_retry_after(headers, self._clock.now_ms())
            return TransientApiError(
                f"GET {path}: HTTP {status}{excerpt}",
                reason=reason,
                status=status,
                retry_after_s=retry_after_s,
            )
        return ClientRequestError(f"GET {path}: HTTP {status}{excerpt}", status=status)

    def _excerpt(self, body: bytes) -> str:
        """A short, single-line, key-free excerpt of an (opaque) error body."""
        text = body[:_ERROR_EXCERPT_CHARS].decode("utf-8", "replace")
        if self._api_key is not None:
            text = text.replace(self._api_key.get_secret_value(), "***")
        text = " ".join(text.split())
        return f": {text}" if text else ""

    def _wait_s(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = exc.retry_after_s if isinstance(exc, TransientApiError) else None
        if hint is not None:
            return min(hint, self.retry.max_retry_after_s)
        backoff = wait_random_exponential(multiplier=self.retry.initial_backoff_s, max=self.retry.max_backoff_s)
        return float(backoff(state))

    def _should_stop(self, state: RetryCallState) -> bool:
        if state.attempt_number >= self.retry.max_attempts:
            return True
        return state.idle_for + state.upcoming_sleep > self.retry.max_total_wait_s

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session


def parse_body(path: str, body: bytes, model: type[ModelT]) -> ModelT:
    """Parse a response body into `model`; typed errors: MalformedResponseError (not JSON), SchemaError."""
    from pydantic import ValidationError

    from watcher.api.decode import validate_finite

    try:
        return validate_finite(model, body)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        if first["type"] == "json_invalid":
            raise json_error(path, first["msg"]) from None
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise SchemaError(f"GET {path}: unexpected response shape at {where}: {first['msg']}", status=200) from None


# What pydantic's JSON reader says of bytes no retry will fix: invalid UTF-8, a lone surrogate escape, nesting past
# its limit (200). A truncated or mangled answer says "EOF while parsing …" or "expected value" instead.
_UNREADABLE = ("unicode", "surrogate", "hex escape", "recursion limit")


def json_error(path: str, problem: str) -> RunloopApiError:
    """The error for a body that is not valid JSON: a mangled answer may read on a retry (MalformedResponseError);
    bytes no retry will fix are the data's fault (SchemaError: that job's poll, reported once, not retried)."""
    if any(word in problem for word in _UNREADABLE):
        return SchemaError(f"GET {path}: response cannot be read: {problem.removeprefix('Invalid JSON: ')}", status=200)
    return MalformedResponseError(f"GET {path}: response is not valid JSON", status=200)


class _LastDecoded(Generic[T]):
    """A decoder that remembers its last answer, so the same bytes again are not parsed again: discovery reads the
    first page of the job list at every cycle, and while no job is created it is the same page every time
    (parsing `small`'s page of five jobs, 15 KB, took 115 µs — at every cycle, of every replica). Decoding is a
    function of the path and the bytes alone, and its readers never change its answer."""

    def __init__(self, decode: Callable[[str, bytes], T]) -> None:
        self._decode = decode
        self._last: tuple[str, bytes, T] | None = None

    def __call__(self, path: str, body: bytes) -> T:
        last = self._last
        if last is not None and last[1] == body and last[0] == path:
            return last[2]
        decoded = self._decode(path, body)
        self._last = (path, body, decoded)
        return decoded


def _raw(path: str, body: bytes) -> bytes:
    return body


def _model(model: type[ModelT]) -> Callable[[str, bytes], ModelT]:
    return lambda path, body: parse_body(path, body, model)


def _params(**values: Any) -> dict[str, str]:
    """Query parameters without the unset ones, booleans spelled as the API expects."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def _path_part(identifier: str) -> str:
    """An id quoted for use as one path segment; `.` and `..` too, which a URL would otherwise resolve as the
    folder itself or its parent (GET /v1/benchmark_jobs/.. is GET /v1/: a 404, and the job reported vanished)."""
    if not identifier:
        raise ValueError("an empty id cannot name a job or run")
    quoted = urllib.parse.quote(identifier, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def _log_retry(path: str, state: RetryCallState, max_attempts: int) -> None:
    """A retry at INFO: one that succeeds changes nothing; a call that fails for good raises, and says so once."""
    exc = state.outcome.exception() if state.outcome else None
    log.info(
        "%s; attempt %d/%d failed, next in %.1fs",
        exc or f"GET {path}",
        state.attempt_number,
        max_attempts,
        state.upcoming_sleep,
        extra={"path": path, "attempt": state.attempt_number, "retry_in_s": round(state.upcoming_sleep, 3)},
    )

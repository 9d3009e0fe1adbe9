"""The status HTTP API: liveness, readiness, Prometheus metrics, read-only views of jobs and recorded events, the
status page (`watcher.web.page`) and the token-guarded actions (`watcher.web.actions`).

Every API response is JSON (except /metrics and the page), errors included: a bad query is a 400 saying which
parameter, an unknown path a 404, and an unexpected failure a 500 without a traceback (it is logged instead).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from watcher.core.memory import JobMemory
from watcher.store.errors import StoreError
from watcher.web.actions import add_action_routes
from watcher.web.page import add_page_routes, security_headers
from watcher.web.source import SOURCE, StatusSource

log = logging.getLogger("benchwatch.status")

DEFAULT_EVENTS_LIMIT: Final = 100
MAX_EVENTS_LIMIT: Final = 1000
IDLE_TIMEOUT_S: Final = 15.0  # a connection completes a request within this long, or it is closed (slowloris)
MAX_LINE_BYTES: Final = 8190  # request line and each header
MAX_BODY_BYTES: Final = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Set while scrapes find the store failing: the failure is logged once, then again only after it answered.
_METRICS_STORE_FAILING: Final = web.AppKey("metrics_store_failing", set[bool])


class QueryError(ValueError):
    """A query parameter the API cannot use; its message says which and why."""


@dataclass(frozen=True, slots=True)
class StatusServer:
    """A running status server and the port it bound (useful when asked for port 0)."""

    runner: web.AppRunner
    port: int

    async def close(self) -> None:
        """Stop listening and release the app's resources."""
        await self.runner.cleanup()


def create_status_app(source: StatusSource) -> web.Application:
    """The status API's aiohttp application, reading from `source`."""
    app = web.Application(middlewares=[security_headers, _bounded_body, _json_errors], client_max_size=MAX_BODY_BYTES)
    app[SOURCE] = source
    app[_METRICS_STORE_FAILING] = set()
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/api/jobs", _jobs)
    app.router.add_get("/api/events", _events)
    add_action_routes(app)
    add_page_routes(app)
    return app


async def start_status_server(
    app: web.Application, host: str, port: int, *, idle_timeout_s: float = IDLE_TIMEOUT_S
) -> StatusServer:
    """Serve `app` on host:port (0 picks a free port) and return the server with the port it bound.

    A connection that has not completed a request within `idle_timeout_s` of opening (or of its last response)
    is closed, however slowly it trickles bytes: slow and idle clients cannot hold connections open for ever.
    Request lines and headers are capped at 8 KB (aiohttp answers 400) and bodies at 64 KB (413); either is
    logged as one warning line, without a traceback."""
    runner = web.AppRunner(
        app,
        keepalive_timeout=idle_timeout_s,
        logger=_http_log,
        max_line_size=MAX_LINE_BYTES,
        max_field_size=MAX_LINE_BYTES,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    return StatusServer(runner, int(bound))


class _OneLineParseErrors(logging.Filter):
    """aiohttp logs a request it cannot parse (a header too long, a bad request line) as an ERROR with a
    traceback; it is the client's mistake: one warning line, without the client's bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = f"status API: refused a malformed or oversized request from %s ({type(exc).__name__})"
            record.exc_info, record.exc_text = None, None
        return True


_http_log = logging.getLogger("benchwatch.status.http")
_http_log.addFilter(_OneLineParseErrors())


@web.middleware
async def _bounded_body(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Nothing here takes a body: one announced larger than MAX_BODY_BYTES is refused before it is read."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        log.warning("status API: refused a %d-byte request body from %s", request.content_length, request.remote)
        return _error(413, f"request body larger than {MAX_BODY_BYTES} bytes")
    return await handler(request)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as JSON: aiohttp's own (404, 405) keep their status, anything unexpected is a logged 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason.lower())
    except QueryError as exc:
        return _error(400, str(exc))
    except Exception:
        log.exception("status API: %s %s failed", request.method, request.path)
        return _error(500, "internal error")


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    try:
        ready, reason = await request.app[SOURCE].readiness()
    except Exception as exc:  # a broken check means not ready, not a 500
        log.warning("readiness check failed: %s", type(exc).__name__, exc_info=True)
        ready, reason = False, f"readiness check failed ({type(exc).__name__})"
    return web.json_response({"ready": ready, "reason": reason}, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    source = request.app[SOURCE]
    failing = request.app[_METRICS_STORE_FAILING]
    try:
        await source.refresh_metrics()
    except StoreError as exc:  # the store away or starved: said once until it answers, not a traceback a scrape
        if not failing:
            log.warning("refreshing metrics before a scrape failed (%s); the store's gauges stay as they were", exc)
        failing.add(True)
    except Exception:  # stale gauges beat a failed scrape: the counters are still right
        log.warning("refreshing metrics before a scrape failed", exc_info=True)
    else:
        failing.clear()
    body, content_type = source.metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _jobs(request: web.Request) -> web.Response:
    store = request.app[SOURCE].store
    memories = await store.load_memories()
    holders = await store.lease_holders()
    jobs = [_job_json(memories[job_id], holders.get(job_id)) for job_id in sorted(memories)]
    return web.json_response(jobs)


def _job_json(memory: JobMemory, holder: str | None) -> dict[str, Any]:
    return {
        "job_id": memory.job_id,
        "job_name": memory.job_name,
        "state": memory.state,
        "finished": memory.finished,
        "counters": memory.counters.model_dump(mode="json"),
        "first_seen_ms": memory.first_seen_ms,
        "last_seen_ms": memory.last_seen_ms,
        "last_change_ms": memory.last_change_ms,
        "holder": holder,  # the replica polling it (PostgreSQL); null on SQLite and for resting jobs
    }


async def _events(request: web.Request) -> web.Response:
    query = request.query
    # bounded: past a 64-bit integer the store's driver raised OverflowError, a 500 with a traceback
    since = _int_param(query.get("since"), "since", default=0, minimum=0, maximum=2**63 - 1)
    limit = _int_param(query.get("limit"), "limit", default=DEFAULT_EVENTS_LIMIT, minimum=1, maximum=MAX_EVENTS_LIMIT)
    job_id = query.get("job_id") or None
    stored = await request.app[SOURCE].store.events(job_id=job_id, since_seq=since, limit=limit)
    # With nothing new the cursor stays put, so a client can keep asking with `next` as its `since`.
    next_seq = stored[-1].seq if stored else since
    return web.json_response({"events": [item.event.model_dump(mode="json") for item in stored], "next": next_seq})


def _int_param(raw: str | None, name: str, *, default: int, minimum: int, maximum: int | None = None) -> int:
    """A query parameter as an integer within bounds, `default` when absent or empty."""
    if raw is None or raw == "":
        return default
    bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"{name} must be an integer {bounds}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise QueryError(f"{name} must be an integer {bounds}")
    return value

"""The delivery log: every notification with its rule, notifier, events and attempts (time, outcome, HTTP status,
error), filtered by job, rule, notifier and status — as JSON (`GET /api/deliveries`) and on the status page — and
why each was sent (`GET /api/explain/{id}`, and the page `/explain/{id}`). Reading is open; retrying a dead letter
is an action (`watcher.web.actions`), behind the token."""

from __future__ import annotations

from typing import Any, Final

import jinja2
from aiohttp import web

from watcher.core.records import LoggedDelivery
from watcher.pipeline.explain import NotFound, attempt_json, explain_id, explanation_json
from watcher.web.pagerows import DeliveryFilters, FilterError
from watcher.web.source import SOURCE

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500


async def read_log(request: web.Request, filters: DeliveryFilters, limit: int) -> list[LoggedDelivery]:
    """The log as filtered, newest first."""
    return await request.app[SOURCE].store.delivery_log(
        job_id=filters.job_id or None,
        rule=filters.rule or None,
        notifier=filters.notifier or None,
        status=filters.status or None,
        limit=limit,
    )


def delivery_json(logged: LoggedDelivery) -> dict[str, Any]:
    """One notification of the log, for tools."""
    item, notification = logged.item, logged.item.notification
    return {
        "id": notification.id,
        "rule": notification.rule,
        "notifier": notification.notifier,
        "severity": notification.severity,
        "action": notification.action,
        "title": notification.title,
        "created_ms": notification.created_ms,
        "job_ids": sorted({event.job_id for event in notification.events}),
        "events": [event.id for event in notification.events],
        "status": item.status.value,
        "interrupted": logged.interrupted,
        "next_attempt_ms": item.next_attempt_ms if item.status == "pending" else None,
        "attempts": [attempt_json(attempt) for attempt in logged.attempts],
    }


def add_delivery_routes(app: web.Application, env: jinja2.Environment) -> None:
    """Register the delivery log's and the explanations' read-only routes."""
    app.router.add_get("/api/deliveries", _deliveries)
    app.router.add_get("/api/explain/{id}", _explain_json)

    async def explain_page(request: web.Request) -> web.Response:
        return await _explain_page(request, env)

    app.router.add_get("/explain/{id}", explain_page)


async def _deliveries(request: web.Request) -> web.Response:
    try:
        filters = DeliveryFilters.from_query(request.query)
        limit = _limit(request.query.get("limit"))
    except FilterError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    logged = await read_log(request, filters, limit)
    return web.json_response({"deliveries": [delivery_json(item) for item in logged]})


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise FilterError(f"limit must be an integer between 1 and {MAX_LIMIT}")
    return int(raw)


async def _explain_json(request: web.Request) -> web.Response:
    try:
        explained = await explain_id(request.app[SOURCE].store, request.match_info["id"])
    except NotFound:
        return web.json_response({"error": "no such event or notification (or the prefix is ambiguous)"}, status=404)
    return web.json_response({"explanations": [explanation_json(item) for item in explained]})


async def _explain_page(request: web.Request, env: jinja2.Environment) -> web.Response:
    some_id = request.match_info["id"]
    try:
        explained = await explain_id(request.app[SOURCE].store, some_id)
    except NotFound:
        explained = []
    shown = [explanation_json(item) for item in explained]
    html = env.get_template("explain.html").render(some_id=some_id, explained=shown)
    return web.Response(
        text=html, content_type="text/html", status=200 if explained else 404, headers={"Cache-Control": "no-store"}
    )

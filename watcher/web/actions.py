"""The status server's actions: runtime silences, retrying a dead letter, reloading the config.

Reading stays open; every action needs `Authorization: Bearer <http.token>`. A missing or wrong token is a 401
before anything is read or changed; without a configured token every action is a 403. There are no cookies, so
another site's page cannot act with the user's credentials (no CSRF), and no CORS headers, so its script cannot
send the header either.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from rules.silences import RuntimeSilence
from watcher.core.records import OutboxStatus
from watcher.pipeline.silences import SilenceError, UnknownSilence, add_silence, expire_silence, list_silences
from watcher.pipeline.silences import request_from_json as silence_request
from watcher.web.source import SOURCE

log = logging.getLogger("benchwatch.status")

Action = Callable[[web.Request], Awaitable[web.Response]]
MAX_BODY_DEPTH = 32  # a silence is an object of matchers, each a value or a small object of operators


def add_action_routes(app: web.Application) -> None:
    """Register the silences API, dead-letter retries and reload on `app`."""
    app.router.add_get("/api/silences", _silences)
    app.router.add_post("/api/silences", _authorized(_add_silence))
    app.router.add_delete("/api/silences/{id}", _authorized(_expire_silence))
    app.router.add_post("/api/deliveries/{id}/retry", _authorized(_retry))
    app.router.add_post("/-/reload", _authorized(_reload))


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _authorized(action: Action) -> Action:
    """`action`, run only for a request bearing the configured token."""

    async def guarded(request: web.Request) -> web.Response:
        expected = request.app[SOURCE].action_token()
        if expected is None:
            return _error(403, "actions are disabled: set http.token (or http.token_file) in the config")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # aiohttp hands over bytes that are not UTF-8 as surrogates, which a plain encode() refuses (a 500); and
        # compare_digest: the time taken must not tell how much of a guess was right
        given_bytes = given.strip().encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given_bytes, expected.encode()):
            log.warning("refused %s %s: missing or wrong token", request.method, request.path)
            return web.json_response(
                {"error": "a valid token is needed: Authorization: Bearer <http.token>"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="benchwatch"'},
            )
        return await action(request)

    return guarded


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether JSON `value` nests more than `limit` levels of lists and objects (counted without recursion)."""
    level: list[tuple[Any, int]] = [(value, 1)]
    while level:
        item, depth = level.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                level.append((child, depth + 1))
    return False


def silence_json(silence: RuntimeSilence, now_ms: int) -> dict[str, Any]:
    """A runtime silence as the API shows it, with its state now."""
    return {**silence.to_json(), "state": silence.state_at(now_ms)}


async def _silences(request: web.Request) -> web.Response:
    source = request.app[SOURCE]
    now_ms = source.now_ms()
    runtime = [silence_json(s, now_ms) for s in await list_silences(source.store)]
    configured = [
        {**silence.model_dump(mode="json"), "state": "active" if silence.active_at(now_ms) else "inactive"}
        for silence in source.config_silences()
    ]
    # the config file's silences are listed apart: they have no id, and only the file changes them
    return web.json_response({"silences": runtime, "config": configured})


async def _add_silence(request: web.Request) -> web.Response:
    source = request.app[SOURCE]
    try:
        data = json.loads(await request.read())
    except (ValueError, RecursionError):  # RecursionError: nested past what the parser goes (a 500 before)
        return _error(400, "expected a JSON body")
    if _deeper_than(data, MAX_BODY_DEPTH):  # matchers are compiled recursively: a deep one would be a 500
        return _error(400, f"the body is nested deeper than {MAX_BODY_DEPTH} levels")
    now_ms = source.now_ms()
    try:
        silence = await add_silence(source.store, silence_request(data, now_ms=now_ms), now_ms)
    except SilenceError as exc:
        return _error(400, str(exc))
    log.info("silence %s added over HTTP: %s until %s", silence.id, silence.matchers_text(), silence.ends_text())
    return web.json_response(silence_json(silence, now_ms), status=201)


async def _expire_silence(request: web.Request) -> web.Response:
    source = request.app[SOURCE]
    now_ms = source.now_ms()
    try:
        silence = await expire_silence(source.store, request.match_info["id"], now_ms)
    except UnknownSilence:
        return _error(404, "no such silence")
    log.info("silence %s expired over HTTP", silence.id)
    return web.json_response(silence_json(silence, now_ms))


async def _retry(request: web.Request) -> web.Response:
    source = request.app[SOURCE]
    notification_id = request.match_info["id"]
    item = await source.store.outbox_item(notification_id)
    if item is None or item.notification.id != notification_id:  # no prefixes here: a button names one exactly
        return _error(404, "no such notification")
    if item.status != OutboxStatus.DEAD:
        return _error(409, f"only a dead letter can be retried; this one is {item.status}")
    await source.store.requeue(notification_id, source.now_ms())
    source.wake_delivery()
    log.info("dead letter %s queued again over HTTP", notification_id)
    return web.json_response({"id": notification_id, "status": "pending"})


async def _reload(request: web.Request) -> web.Response:
    problems = await request.app[SOURCE].reload()
    if problems:
        return _error(422, "the config was refused; the running one stays", problems=problems)
    return web.json_response({"reloaded": True})

"""The status page: `GET /` renders it on the server (Jinja2, autoescaped); `GET /api/page` returns its sections
rendered the same way, as JSON, for the page's script to swap in while it is open; `/static/` serves the script
and the style sheet. A Content-Security-Policy allows only the app's own files: no inline script, no inline style.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Awaitable, Callable
from typing import Final

import jinja2
from aiohttp import web

from watcher.core.events import EVENT_KINDS
from watcher.web.deliveries import add_delivery_routes
from watcher.web.pagerows import DeliveryFilters, FilterError, Filters, PageView, when
from watcher.web.pagetrends import build_trends
from watcher.web.pageview import build_view
from watcher.web.source import SOURCE

SECTIONS: Final = ("jobs", "events", "notifications", "deliveries", "silences")  # refreshed through /api/page
# Trends change only when a job completes, and reading them reads every kept outcome of ten benchmarks: the page
# renders them once, on load, and the script leaves them as they are.
PAGE_SECTIONS: Final = ("jobs", "trends", "events", "notifications", "deliveries", "silences")
STATIC_FILES: Final = {"status.js": "text/javascript", "status.css": "text/css"}
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
MAX_PREFILL_CHARS: Final = 500

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ENV: Final = web.AppKey("page_templates", jinja2.Environment)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("watcher.web", "templates"),
        autoescape=True,  # everything from the API is escaped, in text and in attributes
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["percent"] = lambda value: "—" if value is None else f"{100 * value:.0f} %"
    env.filters["score"] = lambda value: "—" if value is None else f"{value:.2f}"
    env.filters["when"] = when
    return env


def add_page_routes(app: web.Application) -> None:
    """Register the page, its JSON sections and its static files on `app`."""
    app[ENV] = _environment()
    add_delivery_routes(app, app[ENV])
    app.router.add_get("/", _page)
    app.router.add_get("/api/page", _sections)
    app.router.add_get("/static/{name}", _static)


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every response forbids inline script and framing, and says its type is what it says it is."""
    response = await handler(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _filters(request: web.Request) -> Filters:
    """The events' filters from the query; an unknown kind filters nothing rather than failing the page."""
    kind = request.query.get("kind", "")
    return Filters(job_id=request.query.get("job", "")[:200], kind=kind if kind in EVENT_KINDS else "")


async def _view(request: web.Request) -> PageView:
    prefill = request.query.get("silence", "")[:MAX_PREFILL_CHARS]
    try:
        deliveries = DeliveryFilters.from_query(request.query, prefix="dl_")
    except FilterError:  # a hand-edited link: the log unfiltered rather than a failed page
        deliveries = DeliveryFilters()
    return await build_view(request.app[SOURCE], _filters(request), prefill, deliveries)


async def _page(request: web.Request) -> web.Response:
    view = await _view(request)
    view.trends = await build_trends(request.app[SOURCE])
    html = request.app[ENV].get_template("status.html").render(view=view, sections=PAGE_SECTIONS)
    return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})


async def _sections(request: web.Request) -> web.Response:
    view = await _view(request)
    macros = request.app[ENV].get_template("sections.html").make_module({})
    rendered = {name: str(getattr(macros, name)(view)) for name in SECTIONS}
    return web.json_response({"now": view.now, "sections": rendered}, headers={"Cache-Control": "no-store"})


@functools.cache
def _static_body(name: str) -> bytes:
    return importlib.resources.files("watcher.web").joinpath("static", name).read_bytes()


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = STATIC_FILES.get(name)
    if content_type is None:  # only the files listed: a name is never a path
        raise web.HTTPNotFound()
    body = _static_body(name)
    return web.Response(body=body, content_type=content_type, headers={"Cache-Control": "max-age=300"})

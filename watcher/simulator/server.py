"""The Runloop simulator over HTTP: the benchmark API and the `/_sim/` control endpoints, served from a `Simulator`.

In-process: `sim = Simulator(clock=ManualClock())`, `app = create_app(sim)`, and `sim` is the control handle
(create jobs, switch faults, read the request log). As a process: `benchwatch simulate`, controlled over `/_sim/`
(faults, jobs, a batch of jobs, the manual clock, request and progress counts). The state lives in `state.py`;
this module only parses requests, calls it and shapes responses.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import BaseModel, ConfigDict, ValidationError

from watcher.core.clock import ManualClock
from watcher.simulator.control import ClockAdvance, WorkloadRequest
from watcher.simulator.plan import JobPlan, RunPlan, SimAgent, SimJobSpec
from watcher.simulator.state import REQUEST_LOG_SIZE, Faults, RawJson, Simulator, json_bytes
from watcher.simulator.views import job_view, run_view

MAX_LIMIT = 5000
DEFAULT_LIMIT = 20

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SimulatorRoutes:
    """The HTTP handlers of one simulator: each parses its request, asks `sim`, and answers JSON."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def handle_list_jobs(self, request: web.Request) -> web.Response:
        """`GET /v1/benchmark_jobs`: newest first, cursor paging, `name` and `search` filters."""
        query = request.query
        limit = _limit(query.get("limit"))
        name, search = query.get("name"), query.get("search")
        jobs = [
            plan
            for plan in self.sim.jobs()
            if (not name or plan.name == name) and (not search or search in plan.job_id or search in plan.name)
        ]
        page, has_more = _page(jobs, lambda p: p.job_id, query.get("starting_after"), limit)
        now_ms = self.sim.clock.now_ms()

        def render() -> dict[str, Any]:
            body: dict[str, Any] = {"jobs": [self.sim.served_view(plan, now_ms) for plan in page], "has_more": has_more}
            body["total_count"] = len(jobs) if _flag(query.get("include_total_count"), True) else None
            return body

        return _cached_json(self.sim, request, render)

    async def handle_create_job(self, request: web.Request) -> web.Response:
        """`POST /v1/benchmark_jobs`: the API's create parameters, plus a `simulation` block of ours."""
        try:
            params = CreateJobParameters.model_validate_json(await request.read())
            plan = self.sim.add_job(params.to_spec())
        except ValidationError as exc:
            raise _error(400, f"invalid request: {exc.errors(include_url=False)[0]['msg']}") from None
        except ValueError as exc:
            raise _error(400, str(exc)) from None
        return _json(job_view(plan, self.sim.clock.now_ms()))

    async def handle_get_job(self, request: web.Request) -> web.StreamResponse:
        """`GET /v1/benchmark_jobs/{id}`; sent slowly when the job is slowed (`Simulator.slow`)."""
        plan = self.sim.job(request.match_info["id"])
        if plan is None:
            raise _error(404, "benchmark job not found")
        response = _cached_json(self.sim, request, lambda: self.sim.served_view(plan, self.sim.clock.now_ms()))
        bytes_per_s = self.sim.trickle.get(plan.job_id)
        if bytes_per_s is None or not isinstance(response.body, bytes):
            return response
        return await _trickled(request, response.body, bytes_per_s)

    async def handle_get_run(self, request: web.Request) -> web.Response:
        """`GET /v1/benchmark_runs/{id}`."""
        plan, run = self._run(request.match_info["id"])
        return _json(run_view(plan, run, self.sim.clock.now_ms()))

    async def handle_scenario_runs(self, request: web.Request) -> web.Response:
        """`GET /v1/benchmark_runs/{id}/scenario_runs`: paged, optional `state` filter."""
        plan, run = self._run(request.match_info["id"])
        query = request.query
        views = self.sim.scenario_run_views(plan, run)
        if state := query.get("state"):
            views = [view for view in views if view["state"] == state]
        page, has_more = _page(views, lambda v: str(v["id"]), query.get("starting_after"), _limit(query.get("limit")))
        total = len(views) if _flag(query.get("include_total_count"), True) else None
        return _cached_json(self.sim, request, lambda: {"runs": page, "has_more": has_more, "total_count": total})

    async def handle_get_faults(self, request: web.Request) -> web.Response:
        """`GET /_sim/faults`: the fault settings in force."""
        return _json(self.sim.faults.model_dump())

    async def handle_put_faults(self, request: web.Request) -> web.Response:
        """`PUT /_sim/faults`: replace the fault settings."""
        try:
            self.sim.set_faults(Faults.model_validate_json(await request.read()))
        except ValidationError as exc:
            raise _error(400, f"invalid faults: {exc.errors(include_url=False)[0]['msg']}") from None
        return _json(self.sim.faults.model_dump())

    async def handle_add_sim_job(self, request: web.Request) -> web.Response:
        """`POST /_sim/jobs`: create a job from a full `SimJobSpec`."""
        try:
            plan = self.sim.add_job(SimJobSpec.model_validate_json(await request.read()))
        except ValidationError as exc:
            raise _error(400, f"invalid spec: {exc.errors(include_url=False)[0]['msg']}") from None
        except ValueError as exc:
            raise _error(400, str(exc)) from None
        return _json(job_view(plan, self.sim.clock.now_ms()))

    async def handle_tamper(self, request: web.Request) -> web.Response:
        """`PUT /_sim/jobs/{id}/tamper`: serve these fields over the job's true view (`{}`: the truth again)."""
        fields = await _tamper_body(request)
        try:
            self.sim.tamper(request.match_info["id"], fields)
        except KeyError:
            raise _error(404, "benchmark job not found") from None
        return _json({"tampered": sorted(fields)})

    async def handle_remove_job(self, request: web.Request) -> web.Response:
        """`DELETE /_sim/jobs/{id}`: the job vanishes (its GET answers 404 from now on)."""
        try:
            self.sim.remove_job(request.match_info["id"])
        except KeyError:
            raise _error(404, "benchmark job not found") from None
        return _json({"removed": request.match_info["id"]})

    async def handle_tamper_run(self, request: web.Request) -> web.Response:
        """`PUT /_sim/runs/{id}/tamper`: serve these fields over each of the run's scenario runs (`{}`: the truth)."""
        fields = await _tamper_body(request)
        try:
            self.sim.tamper_run(request.match_info["id"], fields)
        except KeyError:
            raise _error(404, "benchmark run not found") from None
        return _json({"tampered": sorted(fields)})

    async def handle_get_clock(self, request: web.Request) -> web.Response:
        """`GET /_sim/clock`: the simulated time, and whether it moves only when told."""
        return _json({"now_ms": self.sim.clock.now_ms(), "manual": isinstance(self.sim.clock, ManualClock)})

    async def handle_advance_clock(self, request: web.Request) -> web.Response:
        """`POST /_sim/clock` `{"advance_ms": n}`: move a manual clock forward (409 for any other clock)."""
        if not isinstance(self.sim.clock, ManualClock):
            raise _error(409, "the clock is not manual: start the simulator with --manual-clock")
        try:
            advance = ClockAdvance.model_validate_json(await request.read())
        except ValidationError as exc:
            raise _error(400, f"invalid clock move: {exc.errors(include_url=False)[0]['msg']}") from None
        return _json({"now_ms": self.sim.clock.advance(advance.advance_ms), "manual": True})

    async def handle_add_workload(self, request: web.Request) -> web.Response:
        """`POST /_sim/workload`: create many jobs from one spec in one request."""
        try:
            workload = WorkloadRequest.model_validate_json(await request.read())
            for spec, create_ms in workload.jobs(self.sim.clock.now_ms()):
                self.sim.add_job(spec, create_ms=create_ms)
        except ValidationError as exc:
            raise _error(400, f"invalid workload: {exc.errors(include_url=False)[0]['msg']}") from None
        except ValueError as exc:
            raise _error(400, str(exc)) from None
        return _json({"created": workload.count, "jobs": self.sim.job_count()})

    async def handle_stats(self, request: web.Request) -> web.Response:
        """`GET /_sim/stats`: API requests served so far and the bytes of their bodies."""
        body = {
            "requests": self.sim.requests_served,
            "response_bytes": self.sim.bytes_served,
            "jobs": self.sim.job_count(),
        }
        return _json({**body, "now_ms": self.sim.clock.now_ms()})

    async def handle_requests(self, request: web.Request) -> web.Response:
        """`GET /_sim/requests?last=N`: the last N API requests (at most the log's size), oldest first.
        `?since=N` instead: the requests from the N-th served on (counting from 0, those still in the log), and
        `next`, the count to ask from next time — no request is missed or seen twice between two reads."""
        logged = list(self.sim.request_log)
        if "since" in request.query:
            since = _count_query(request, "since", upper=None)
            first = self.sim.requests_served - len(logged)  # the absolute index of the oldest line kept
            kept = logged[max(0, since - first) :]
            return _json({"requests": kept, "first": max(since, first), "next": self.sim.requests_served})
        last = _count_query(request, "last", upper=REQUEST_LOG_SIZE, default=100)
        return _json({"requests": logged[len(logged) - min(last, len(logged)) :]})

    async def handle_progress(self, request: web.Request) -> web.Response:
        """`GET /_sim/progress`: how far every job has come now (terminal jobs, finished runs and scenario runs);
        `?terminal_ids=true` lists the terminal jobs' ids too, `?job_ids=true` every job's."""
        query = request.query
        return _json(
            self.sim.progress(terminal_ids=query.get("terminal_ids") == "true", job_ids=query.get("job_ids") == "true")
        )

    def _run(self, run_id: str) -> tuple[JobPlan, RunPlan]:
        found = self.sim.started_run(run_id)
        if found is None:
            raise _error(404, "benchmark run not found")
        return found


SIMULATOR = web.AppKey("simulator", Simulator)


class CreateJobParameters(BaseModel):
    """`BenchmarkJobCreateParameters`, with the simulator's own `simulation` block for rates and timing."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    spec: dict[str, Any] | None = None
    simulation: dict[str, Any] | None = None

    def to_spec(self) -> SimJobSpec:
        """The simulation spec these parameters ask for."""
        fields: dict[str, Any] = dict(self.simulation or {})
        if self.name:
            fields["name"] = self.name
        spec = self.spec or {}
        if spec.get("scenario_ids"):
            fields["scenario_ids"] = list(spec["scenario_ids"])
        if spec.get("agent_configs"):
            fields["agents"] = [
                SimAgent(name=agent["name"], model_name=agent.get("model_name")) for agent in spec["agent_configs"]
            ]
        orchestrator = spec.get("orchestrator_config") or {}
        if orchestrator.get("n_concurrent_trials"):
            fields["concurrency"] = orchestrator["n_concurrent_trials"]
        if orchestrator.get("n_attempts") is not None:
            fields["n_attempts"] = orchestrator["n_attempts"]
        return SimJobSpec.model_validate(fields)


def create_app(sim: Simulator) -> web.Application:
    """The simulator as an aiohttp application; `sim` stays the control handle."""
    app = web.Application(
        middlewares=[_error_middleware, _log_middleware(sim), _auth_middleware(sim), _fault_middleware(sim)]
    )
    routes = SimulatorRoutes(sim)
    app.router.add_get("/v1/benchmark_jobs", routes.handle_list_jobs)
    app.router.add_post("/v1/benchmark_jobs", routes.handle_create_job)
    app.router.add_get("/v1/benchmark_jobs/{id}", routes.handle_get_job)
    app.router.add_get("/v1/benchmark_runs/{id}", routes.handle_get_run)
    app.router.add_get("/v1/benchmark_runs/{id}/scenario_runs", routes.handle_scenario_runs)
    app.router.add_get("/_sim/faults", routes.handle_get_faults)
    app.router.add_put("/_sim/faults", routes.handle_put_faults)
    app.router.add_post("/_sim/jobs", routes.handle_add_sim_job)
    app.router.add_post("/_sim/workload", routes.handle_add_workload)
    app.router.add_put("/_sim/jobs/{id}/tamper", routes.handle_tamper)
    app.router.add_put("/_sim/runs/{id}/tamper", routes.handle_tamper_run)
    app.router.add_delete("/_sim/jobs/{id}", routes.handle_remove_job)
    app.router.add_get("/_sim/clock", routes.handle_get_clock)
    app.router.add_post("/_sim/clock", routes.handle_advance_clock)
    app.router.add_get("/_sim/stats", routes.handle_stats)
    app.router.add_get("/_sim/requests", routes.handle_requests)
    app.router.add_get("/_sim/progress", routes.handle_progress)
    app[SIMULATOR] = sim
    return app


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as a JSON body, as the real API does."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json":
            raise
        raise _error(exc.status, exc.reason) from None


def _count_query(request: web.Request, name: str, *, upper: int | None, default: int = 0) -> int:
    """A non-negative integer query parameter (at most `upper`), or a 400 that says what is wrong."""
    try:
        value = int(request.query.get(name, str(default)))
    except ValueError:
        raise _error(400, f"{name} must be an integer") from None
    if value < 0 or (upper is not None and value > upper):
        raise _error(400, f"{name} must be between 0 and {upper}" if upper is not None else f"{name} must be >= 0")
    return value


def _log_middleware(sim: Simulator) -> Middleware:
    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v1/"):
            return await handler(request)
        sim.request_log.append(f"{request.method} {request.path_qs}")
        sim.requests_served += 1
        response = await handler(request)
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            sim.bytes_served += len(response.body)
        return response

    return record


def _auth_middleware(sim: Simulator) -> Middleware:
    @web.middleware
    async def check_bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
        if sim.api_key and request.path.startswith("/v1/"):
            given = request.headers.get("Authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {sim.api_key}".encode()):
                raise _error(401, "missing or invalid bearer token")
        return await handler(request)

    return check_bearer


def _fault_middleware(sim: Simulator) -> Middleware:
    @web.middleware
    async def inject(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v1/"):
            return await handler(request)
        if sim.faults.latency_ms:
            await asyncio.sleep(sim.faults.latency_ms / 1000)
        fault = sim.draw_fault()
        if fault in ("429", "500", "503"):
            headers = {"Retry-After": f"{sim.faults.retry_after_s:g}"} if fault == "429" else None
            raise _error(int(fault), "simulated fault", headers=headers)
        response = await handler(request)
        if fault == "malformed" and isinstance(response, web.Response) and response.body:
            return web.Response(body=b'{"id": "bmj_', content_type="application/json")
        if fault == "truncated" and isinstance(response, web.Response) and isinstance(response.body, bytes):
            return await _truncated(request, response.body)
        return response

    return inject


def _raw_json(value: dict[str, Any]) -> Any:
    """A tamper body's `{"$raw": "1e400"}` or `{"$raw_base64": "…"}` as the bytes to serve there."""
    if value.keys() == {"$raw"} and isinstance(value["$raw"], str):
        return RawJson(value["$raw"].encode())
    if value.keys() == {"$raw_base64"} and isinstance(value["$raw_base64"], str):
        return RawJson(base64.b64decode(value["$raw_base64"]))
    return value


async def _trickled(request: web.Request, body: bytes, bytes_per_s: float) -> web.StreamResponse:
    """`body` sent a few bytes at a time, at `bytes_per_s` (a real network's slow answer: the client waits)."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    chunk = max(1, int(bytes_per_s / 10))
    for start in range(0, len(body), chunk):
        try:
            await response.write(body[start : start + chunk])
        except ConnectionResetError:  # the client gave up waiting (its deadline): nothing more to send
            return response
        await asyncio.sleep(chunk / bytes_per_s)
    return response


async def _truncated(request: web.Request, body: bytes) -> web.StreamResponse:
    """Announce the whole body, send half of it, and drop the connection."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.close()
    return response


_ERROR_CLASSES: dict[int, type[web.HTTPException]] = {
    cls.status_code: cls
    for cls in (
        web.HTTPBadRequest, web.HTTPUnauthorized, web.HTTPNotFound, web.HTTPMethodNotAllowed, web.HTTPConflict,
        web.HTTPTooManyRequests, web.HTTPInternalServerError, web.HTTPServiceUnavailable,
    )
}  # fmt: skip


async def _tamper_body(request: web.Request) -> dict[str, Any]:
    try:
        fields = json.loads(await request.read(), object_hook=_raw_json)
    except (ValueError, RecursionError):
        raise _error(400, "tamper body must be a JSON object") from None
    if not isinstance(fields, dict):
        raise _error(400, "tamper body must be a JSON object")
    return fields


def _error(status: int, message: str, *, headers: dict[str, str] | None = None) -> web.HTTPException:
    """An HTTP error with the JSON body `{"status", "message"}`."""
    body = json.dumps({"status": status, "message": message})
    error_class = _ERROR_CLASSES.get(status)
    if error_class is None:
        exc = web.HTTPException(text=body, content_type="application/json", headers=headers)
        exc.set_status(status)
        return exc
    return error_class(text=body, content_type="application/json", headers=headers)


def _json(body: Any) -> web.Response:
    return web.Response(body=json_bytes(body), content_type="application/json")


def _cached_json(sim: Simulator, request: web.Request, render: Callable[[], Any]) -> web.Response:
    """The JSON response for this path and query, rendered once per clock reading and set of jobs."""
    return web.Response(body=sim.cached_body(request.path_qs, render), content_type="application/json")


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise _error(400, f"limit must be an integer, got {raw!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise _error(400, f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _flag(raw: str | None, default: bool) -> bool:
    return default if raw is None or raw == "" else raw.lower() == "true"


def _page(items: Sequence[T], key: Callable[[T], str], starting_after: str | None, limit: int) -> tuple[list[T], bool]:
    start = 0
    if starting_after:
        positions = [i for i, item in enumerate(items) if key(item) == starting_after]
        if not positions:
            raise _error(400, f"unknown cursor starting_after={starting_after!r}")
        start = positions[0] + 1
    page = list(items[start : start + limit])
    return page, start + limit < len(items)

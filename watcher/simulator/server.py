"""The Runloop simulator: the benchmark API over HTTP, on a clock you choose, with faults you switch on.

In-process: `sim = Simulator(clock=ManualClock())`, `app = create_app(sim)`, and `sim` is the control handle
(create jobs, switch faults, read the request log). As a process: `benchwatch simulate`, controlled over `/_sim/`
(faults, jobs, a batch of jobs, the manual clock, request and progress counts).
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from watcher.core.clock import Clock, ManualClock, SystemClock
from watcher.simulator.control import ClockAdvance, WorkloadRequest, progress
from watcher.simulator.plan import JobPlan, RunPlan, SimAgent, SimJobSpec, make_plan, token
from watcher.simulator.views import job_view, run_view, scenario_run_views

MAX_LIMIT = 5000
REQUEST_LOG_SIZE = 10_000  # the last requests served, for tests and troubleshooting
DEFAULT_LIMIT = 20

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Faults(BaseModel):
    """Shares of API responses to spoil, and latency to add; switchable while the simulator runs."""

    model_config = ConfigDict(extra="forbid")

    rate_429: float = Field(0.0, ge=0, le=1)
    rate_500: float = Field(0.0, ge=0, le=1)
    rate_503: float = Field(0.0, ge=0, le=1)
    rate_truncated: float = Field(0.0, ge=0, le=1)
    rate_malformed: float = Field(0.0, ge=0, le=1)
    retry_after_s: float = Field(1.0, ge=0)
    latency_ms: int = Field(0, ge=0)

    def pick(self, draw: float) -> str | None:
        """The fault for a uniform draw in [0, 1), or None for a healthy response."""
        edge = 0.0
        for name, rate in (
            ("429", self.rate_429),
            ("500", self.rate_500),
            ("503", self.rate_503),
            ("truncated", self.rate_truncated),
            ("malformed", self.rate_malformed),
        ):
            edge += rate
            if draw < edge:
                return name
        return None


class Simulator:
    """Simulated benchmark jobs; every response is a pure function of the seed, the jobs and the clock."""

    def __init__(self, *, seed: int = 0, clock: Clock | None = None, api_key: str | None = None) -> None:
        self.seed = seed
        self.clock = clock or SystemClock()
        self.api_key = api_key
        self.faults = Faults()
        self.request_log: deque[str] = deque(maxlen=REQUEST_LOG_SIZE)
        self._fault_rng = random.Random(f"{seed}:faults")
        self._jobs: dict[str, JobPlan] = {}
        self._runs: dict[str, tuple[JobPlan, RunPlan]] = {}
        self._names: set[str] = set()
        self.requests_served = 0  # /v1/ requests, and the bytes of their bodies: what a poller cost the API
        self.bytes_served = 0
        # Responses are pure functions of (jobs, clock): rendered once per change, however many pollers ask.
        self._generation = 0
        self._cache_stamp: tuple[int, int] | None = None
        self._bodies: dict[str, bytes] = {}
        self._scenario_views: dict[str, list[dict[str, Any]]] = {}
        self._tampered: dict[str, dict[str, Any]] = {}  # job id → fields served over the truth (hostile data)

    def __repr__(self) -> str:
        key = "<set>" if self.api_key else None
        return f"Simulator(seed={self.seed}, jobs={len(self._jobs)}, api_key={key})"

    # -- control ---------------------------------------------------------------------------------

    def add_job(self, spec: SimJobSpec | None = None, *, create_ms: int | None = None) -> JobPlan:
        """Create a job from `spec` at `create_ms` (default: now); its whole life is drawn now."""
        spec = spec or SimJobSpec()
        index = len(self._jobs)
        rng = random.Random(f"{self.seed}:job:{index}")
        job_id = f"bmj_{token(rng, 20)}"
        name = spec.name or f"sim-job-{index:04d}"
        if name in self._names:
            raise ValueError(f"a job named {name!r} exists already")
        created = self.clock.now_ms() if create_ms is None else create_ms
        plan = make_plan(spec, job_id=job_id, name=name, create_ms=created, rng=rng)
        self._jobs[job_id] = plan
        self._names.add(name)
        self._generation += 1
        for run in plan.runs:
            self._runs[run.run_id] = (plan, run)
        return plan

    def tamper(self, job_id: str, fields: dict[str, Any]) -> None:
        """Serve `fields` over a job's true view, on the list and on its GET (hostile data: nulls, wrong types,
        huge or negative numbers); nested objects are merged, `{}` serves the truth again. KeyError when unknown."""
        if job_id not in self._jobs:
            raise KeyError(job_id)
        if fields:
            self._tampered[job_id] = fields
        else:
            self._tampered.pop(job_id, None)
        self._generation += 1

    def served_view(self, plan: JobPlan, now_ms: int) -> dict[str, Any]:
        """What the API serves of a job now: its view, with any tampered fields over it."""
        view = job_view(plan, now_ms)
        fields = self._tampered.get(plan.job_id)
        return view if fields is None else _merged(view, fields)

    def set_faults(self, faults: Faults) -> None:
        """Replace the fault settings (all zero: a healthy API)."""
        self.faults = faults

    def jobs(self) -> list[JobPlan]:
        """Every job, newest first."""
        return sorted(self._jobs.values(), key=lambda p: (p.create_ms, p.job_id), reverse=True)

    def job(self, job_id: str) -> JobPlan | None:
        """The plan of one job."""
        return self._jobs.get(job_id)

    def job_view(self, job_id: str) -> dict[str, Any]:
        """What `GET /v1/benchmark_jobs/{id}` answers now (KeyError when unknown)."""
        return self.served_view(self._jobs[job_id], self.clock.now_ms())

    def scenario_run_views(self, plan: JobPlan, run: RunPlan) -> list[dict[str, Any]]:
        """`scenario_run_views` now, computed once per clock reading and set of jobs."""
        self._fresh_cache()
        views = self._scenario_views.get(run.run_id)
        if views is None:
            views = self._scenario_views[run.run_id] = scenario_run_views(plan, run, self.clock.now_ms())
        return views

    def _fresh_cache(self) -> None:
        stamp = (self.clock.now_ms(), self._generation)
        if stamp != self._cache_stamp:
            self._cache_stamp = stamp
            self._bodies.clear()
            self._scenario_views.clear()

    def _cached_json(self, request: web.Request, render: Callable[[], Any]) -> web.Response:
        """The JSON response for this path and query, rendered once per clock reading and set of jobs."""
        self._fresh_cache()
        body = self._bodies.get(request.path_qs)
        if body is None:
            body = self._bodies[request.path_qs] = _json_bytes(render())
        return web.Response(body=body, content_type="application/json")

    def draw_fault(self) -> str | None:
        """Draw the fault for the next API response from the seeded fault stream."""
        return self.faults.pick(self._fault_rng.random())

    # -- HTTP handlers ---------------------------------------------------------------------------

    async def handle_list_jobs(self, request: web.Request) -> web.Response:
        """`GET /v1/benchmark_jobs`: newest first, cursor paging, `name` and `search` filters."""
        query = request.query
        limit = _limit(query.get("limit"))
        name, search = query.get("name"), query.get("search")
        jobs = [
            plan
            for plan in self.jobs()
            if (not name or plan.name == name) and (not search or search in plan.job_id or search in plan.name)
        ]
        page, has_more = _page(jobs, lambda p: p.job_id, query.get("starting_after"), limit)
        now_ms = self.clock.now_ms()

        def render() -> dict[str, Any]:
            body: dict[str, Any] = {"jobs": [self.served_view(plan, now_ms) for plan in page], "has_more": has_more}
            body["total_count"] = len(jobs) if _flag(query.get("include_total_count"), True) else None
            return body

        return self._cached_json(request, render)

    async def handle_create_job(self, request: web.Request) -> web.Response:
        """`POST /v1/benchmark_jobs`: the API's create parameters, plus a `simulation` block of ours."""
        try:
            params = CreateJobParameters.model_validate_json(await request.read())
            plan = self.add_job(params.to_spec())
        except ValidationError as exc:
            raise _error(400, f"invalid request: {exc.errors(include_url=False)[0]['msg']}") from None
        except ValueError as exc:
            raise _error(400, str(exc)) from None
        return _json(job_view(plan, self.clock.now_ms()))

    async def handle_get_job(self, request: web.Request) -> web.Response:
        """`GET /v1/benchmark_jobs/{id}`."""
        plan = self._jobs.get(request.match_info["id"])
        if plan is None:
            raise _error(404, "benchmark job not found")
        return self._cached_json(request, lambda: self.served_view(plan, self.clock.now_ms()))

    async def handle_get_run(self, request: web.Request) -> web.Response:
        """`GET /v1/benchmark_runs/{id}`."""
        plan, run = self._run(request.match_info["id"])
        return _json(run_view(plan, run, self.clock.now_ms()))

    async def handle_scenario_runs(self, request: web.Request) -> web.Response:
        """`GET /v1/benchmark_runs/{id}/scenario_runs`: paged, optional `state` filter."""
        plan, run = self._run(request.match_info["id"])
        query = request.query
        views = self.scenario_run_views(plan, run)
        if state := query.get("state"):
            views = [view for view in views if view["state"] == state]
        page, has_more = _page(views, lambda v: str(v["id"]), query.get("starting_after"), _limit(query.get("limit")))
        total = len(views) if _flag(query.get("include_total_count"), True) else None
        return self._cached_json(request, lambda: {"runs": page, "has_more": has_more, "total_count": total})

    async def handle_get_faults(self, request: web.Request) -> web.Response:
        """`GET /_sim/faults`: the fault settings in force."""
        return _json(self.faults.model_dump())

    async def handle_put_faults(self, request: web.Request) -> web.Response:
        """`PUT /_sim/faults`: replace the fault settings."""
        try:
            self.set_faults(Faults.model_validate_json(await request.read()))
        except ValidationError as exc:
            raise _error(400, f"invalid faults: {exc.errors(include_url=False)[0]['msg']}") from None
        return _json(self.faults.model_dump())

    async def handle_add_sim_job(self, request: web.Request) -> web.Response:
        """`POST /_sim/jobs`: create a job from a full `SimJobSpec`."""
        try:
            plan = self.add_job(SimJobSpec.model_validate_json(await request.read()))
        except ValidationError as exc:
            raise _error(400, f"invalid spec: {exc.errors(include_url=False)[0]['msg']}") from None
        except ValueError as exc:
            raise _error(400, str(exc)) from None
        return _json(job_view(plan, self.clock.now_ms()))

    async def handle_tamper(self, request: web.Request) -> web.Response:
        """`PUT /_sim/jobs/{id}/tamper`: serve these fields over the job's true view (`{}`: the truth again)."""
        try:
            fields = json.loads(await request.read())
        except ValueError:
            raise _error(400, "tamper body must be a JSON object") from None
        if not isinstance(fields, dict):
            raise _error(400, "tamper body must be a JSON object")
        try:
            self.tamper(request.match_info["id"], fields)
        except KeyError:
            raise _error(404, "benchmark job not found") from None
        return _json({"tampered": sorted(fields)})

    async def handle_get_clock(self, request: web.Request) -> web.Response:
        """`GET /_sim/clock`: the simulated time, and whether it moves only when told."""
        return _json({"now_ms": self.clock.now_ms(), "manual": isinstance(self.clock, ManualClock)})

    async def handle_advance_clock(self, request: web.Request) -> web.Response:
        """`POST /_sim/clock` `{"advance_ms": n}`: move a manual clock forward (409 for any other clock)."""
        if not isinstance(self.clock, ManualClock):
            raise _error(409, "the clock is not manual: start the simulator with --manual-clock")
        try:
            advance = ClockAdvance.model_validate_json(await request.read())
        except ValidationError as exc:
            raise _error(400, f"invalid clock move: {exc.errors(include_url=False)[0]['msg']}") from None
        return _json({"now_ms": self.clock.advance(advance.advance_ms), "manual": True})

    async def handle_add_workload(self, request: web.Request) -> web.Response:
        """`POST /_sim/workload`: create many jobs from one spec in one request."""
        try:
            workload = WorkloadRequest.model_validate_json(await request.read())
            for spec, create_ms in workload.jobs(self.clock.now_ms()):
                self.add_job(spec, create_ms=create_ms)
        except ValidationError as exc:
            raise _error(400, f"invalid workload: {exc.errors(include_url=False)[0]['msg']}") from None
        except ValueError as exc:
            raise _error(400, str(exc)) from None
        return _json({"created": workload.count, "jobs": len(self._jobs)})

    async def handle_stats(self, request: web.Request) -> web.Response:
        """`GET /_sim/stats`: API requests served so far and the bytes of their bodies."""
        body = {"requests": self.requests_served, "response_bytes": self.bytes_served, "jobs": len(self._jobs)}
        return _json({**body, "now_ms": self.clock.now_ms()})

    async def handle_requests(self, request: web.Request) -> web.Response:
        """`GET /_sim/requests?last=N`: the last N API requests (at most the log's size), oldest first."""
        try:
            last = int(request.query.get("last", "100"))
        except ValueError:
            raise _error(400, "last must be an integer") from None
        if not 0 <= last <= REQUEST_LOG_SIZE:
            raise _error(400, f"last must be between 0 and {REQUEST_LOG_SIZE}")
        logged = list(self.request_log)
        return _json({"requests": logged[len(logged) - min(last, len(logged)) :]})

    async def handle_progress(self, request: web.Request) -> web.Response:
        """`GET /_sim/progress`: how far every job has come now (terminal jobs, finished runs and scenario runs)."""
        return _json(progress(self._jobs.values(), self.clock.now_ms()))

    def _run(self, run_id: str) -> tuple[JobPlan, RunPlan]:
        found = self._runs.get(run_id)
        if found is None or found[1].start_ms > self.clock.now_ms():
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
    app.router.add_get("/v1/benchmark_jobs", sim.handle_list_jobs)
    app.router.add_post("/v1/benchmark_jobs", sim.handle_create_job)
    app.router.add_get("/v1/benchmark_jobs/{id}", sim.handle_get_job)
    app.router.add_get("/v1/benchmark_runs/{id}", sim.handle_get_run)
    app.router.add_get("/v1/benchmark_runs/{id}/scenario_runs", sim.handle_scenario_runs)
    app.router.add_get("/_sim/faults", sim.handle_get_faults)
    app.router.add_put("/_sim/faults", sim.handle_put_faults)
    app.router.add_post("/_sim/jobs", sim.handle_add_sim_job)
    app.router.add_post("/_sim/workload", sim.handle_add_workload)
    app.router.add_put("/_sim/jobs/{id}/tamper", sim.handle_tamper)
    app.router.add_get("/_sim/clock", sim.handle_get_clock)
    app.router.add_post("/_sim/clock", sim.handle_advance_clock)
    app.router.add_get("/_sim/stats", sim.handle_stats)
    app.router.add_get("/_sim/requests", sim.handle_requests)
    app.router.add_get("/_sim/progress", sim.handle_progress)
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


def _error(status: int, message: str, *, headers: dict[str, str] | None = None) -> web.HTTPException:
    """An HTTP error with the JSON body `{"status", "message"}`."""
    body = json.dumps({"status": status, "message": message})
    error_class = _ERROR_CLASSES.get(status)
    if error_class is None:
        exc = web.HTTPException(text=body, content_type="application/json", headers=headers)
        exc.set_status(status)
        return exc
    return error_class(text=body, content_type="application/json", headers=headers)


def _merged(view: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """`view` with `fields` over it; where both hold an object, the objects are merged the same way."""
    out = dict(view)
    for key, value in fields.items():
        below = out.get(key)
        out[key] = _merged(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
    return out


def _json(body: Any) -> web.Response:
    return web.Response(body=_json_bytes(body), content_type="application/json")


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


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

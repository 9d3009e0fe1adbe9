"""The simulator's state and its control handle: the jobs, the faults, tampered views, the clock, the request log
and counters, and the rendered-body cache. No HTTP here: `server.py` serves this state over aiohttp.

Every API document is a pure function of the seed, the jobs and the clock, so the state renders each body once per
change (a clock reading or a new set of jobs) however many pollers ask.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from watcher.core.clock import Clock, SystemClock
from watcher.simulator.control import progress
from watcher.simulator.plan import JobPlan, RunPlan, SimJobSpec, make_plan, token
from watcher.simulator.views import job_view, scenario_run_views

REQUEST_LOG_SIZE = 10_000  # the last requests served, for tests and troubleshooting


@dataclass(frozen=True)
class RawJson:
    """Bytes served exactly as given where a JSON value goes, in a tampered field: what `json.dumps` cannot write
    (`1e400`, invalid UTF-8, a lone surrogate escape). Over HTTP: `{"$raw": "1e400"}` or `{"$raw_base64": "…"}`."""

    data: bytes


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
        self._tampered_runs: dict[str, dict[str, Any]] = {}  # run id → fields served over each of its scenario runs
        self.trickle: dict[str, float] = {}  # job id → bytes per second its GET is sent at (a slow answer)

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

    def remove_job(self, job_id: str) -> None:
        """The job vanishes: from now on its GET (and its runs') answers 404 and the list leaves it out. KeyError
        when unknown."""
        plan = self._jobs.pop(job_id)
        self._names.discard(plan.name)
        for run in plan.runs:
            self._runs.pop(run.run_id, None)
            self._tampered_runs.pop(run.run_id, None)
        self._tampered.pop(job_id, None)
        self._generation += 1

    def tamper_run(self, run_id: str, fields: dict[str, Any]) -> None:
        """Serve `fields` over each scenario run of one benchmark run on its scenario-run pages (a malformed page: a
        null `scenario_id`, a wrong type); nested objects are merged, `{}` serves the truth again. KeyError when
        unknown."""
        if run_id not in self._runs:
            raise KeyError(run_id)
        if fields:
            self._tampered_runs[run_id] = fields
        else:
            self._tampered_runs.pop(run_id, None)
        self._generation += 1

    def slow(self, job_id: str, bytes_per_s: float | None) -> None:
        """Send this job's `GET` at `bytes_per_s` (None: at full speed again): one slow answer among fast ones.
        KeyError when unknown."""
        if job_id not in self._jobs:
            raise KeyError(job_id)
        if bytes_per_s is None:
            self.trickle.pop(job_id, None)
        else:
            self.trickle[job_id] = bytes_per_s

    def served_view(self, plan: JobPlan, now_ms: int) -> dict[str, Any]:
        """What the API serves of a job now: its view, with any tampered fields over it."""
        view = job_view(plan, now_ms)
        fields = self._tampered.get(plan.job_id)
        return view if fields is None else _merged(view, fields)

    def set_faults(self, faults: Faults) -> None:
        """Replace the fault settings (all zero: a healthy API)."""
        self.faults = faults

    def draw_fault(self) -> str | None:
        """Draw the fault for the next API response from the seeded fault stream."""
        return self.faults.pick(self._fault_rng.random())

    # -- reading ---------------------------------------------------------------------------------

    def jobs(self) -> list[JobPlan]:
        """Every job, newest first."""
        return sorted(self._jobs.values(), key=lambda p: (p.create_ms, p.job_id), reverse=True)

    def job_count(self) -> int:
        """How many jobs exist."""
        return len(self._jobs)

    def job(self, job_id: str) -> JobPlan | None:
        """The plan of one job, by its id or by the id a tampered view gives it (hostile ids: `..`)."""
        plan = self._jobs.get(job_id)
        if plan is None:
            served = (real for real, fields in self._tampered.items() if fields.get("id") == job_id)
            plan = self._jobs.get(next(served, ""))
        return plan

    def job_view(self, job_id: str) -> dict[str, Any]:
        """What `GET /v1/benchmark_jobs/{id}` answers now (KeyError when unknown)."""
        return self.served_view(self._jobs[job_id], self.clock.now_ms())

    def started_run(self, run_id: str) -> tuple[JobPlan, RunPlan] | None:
        """A run and its job, or None when unknown or not started yet (the API does not know it then)."""
        found = self._runs.get(run_id)
        if found is None or found[1].start_ms > self.clock.now_ms():
            return None
        return found

    def scenario_run_views(self, plan: JobPlan, run: RunPlan) -> list[dict[str, Any]]:
        """`scenario_run_views` now (with any tampered fields over each), computed once per clock reading and set
        of jobs."""
        self._fresh_cache()
        views = self._scenario_views.get(run.run_id)
        if views is None:
            views = self._scenario_views[run.run_id] = scenario_run_views(plan, run, self.clock.now_ms())
        fields = self._tampered_runs.get(run.run_id)
        return views if fields is None else [_merged(view, fields) for view in views]

    def progress(self, *, terminal_ids: bool = False, job_ids: bool = False) -> dict[str, Any]:
        """How far every job has come now (terminal jobs, finished runs and scenario runs; with `terminal_ids`,
        which jobs are terminal; with `job_ids`, every job's id)."""
        return progress(self._jobs.values(), self.clock.now_ms(), terminal_ids=terminal_ids, job_ids=job_ids)

    def cached_body(self, key: str, render: Callable[[], Any]) -> bytes:
        """The compact JSON of `render()` for `key` (a path and query), rendered once per clock reading and set
        of jobs."""
        self._fresh_cache()
        body = self._bodies.get(key)
        if body is None:
            body = self._bodies[key] = json_bytes(render())
        return body

    def _fresh_cache(self) -> None:
        stamp = (self.clock.now_ms(), self._generation)
        if stamp != self._cache_stamp:
            self._cache_stamp = stamp
            self._bodies.clear()
            self._scenario_views.clear()


def json_bytes(body: Any) -> bytes:
    """`body` as compact JSON, the way every simulator response is encoded; a `RawJson` value as its bytes."""
    raws: list[bytes] = []

    def placeholder(value: object) -> str:
        if not isinstance(value, RawJson):
            raise TypeError(f"{type(value).__name__} is not JSON serialisable")
        raws.append(value.data)
        return f"\0sim-raw-{len(raws) - 1}"

    encoded = json.dumps(body, separators=(",", ":"), default=placeholder).encode()
    for index, data in enumerate(raws):
        encoded = encoded.replace(b'"\\u0000sim-raw-%d"' % index, data, 1)
    return encoded


def _merged(view: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """`view` with `fields` over it; where both hold an object, the objects are merged the same way."""
    out = dict(view)
    for key, value in fields.items():
        below = out.get(key)
        out[key] = _merged(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
    return out

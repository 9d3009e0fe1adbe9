"""`benchwatch wait`'s loop: poll one job until it ends, judge it against thresholds, pick the exit code.

Every poll goes through `JobTracker.observe`, the one path from a snapshot to events. Time comes from an injected
clock and sleep, so tests move time instead of waiting for it. Output is a `WaitView`'s business (`views`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from watcher.api.client import RunloopClient
from watcher.api.errors import NotFoundError, RunloopApiError, TransientApiError
from watcher.api.health import ApiHealth
from watcher.api.poll import fetch_snapshot, runs_to_follow
from watcher.cli.wait.baseline import baseline_misses, baseline_verdicts, regressed_scenarios
from watcher.cli.wait.defaults import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_STALLED,
    EXIT_THRESHOLD_MISSED,
    EXIT_TIMEOUT,
    EXIT_UNKNOWN,
    EXIT_USAGE,
    LATE_POLLS,
)
from watcher.cli.wait.first import FirstLook
from watcher.cli.wait.junit import Verdict, write_junit
from watcher.cli.wait.markdown import wait_markdown, write_markdown
from watcher.cli.wait.model import (
    ThresholdMiss,
    Thresholds,
    WaitOptions,
    WaitResult,
    WaitView,
)
from watcher.cli.wait.progress import build_progress, passed_by_run
from watcher.config.durations import format_duration_ms
from watcher.core.clock import Clock, SystemClock
from watcher.core.events import JobCompared
from watcher.core.memory import JobMemory
from watcher.core.models import BenchmarkJobView, JobState
from watcher.core.snapshot import Snapshot
from watcher.core.summary import JobSummary
from watcher.diff.summary import dashboard_url_for, summarize
from watcher.diff.timers import stall
from watcher.pipeline.archive import OutcomeArchive
from watcher.pipeline.baseline import BaselineFinder
from watcher.pipeline.comparer import JobComparer
from watcher.pipeline.tracker import JobTracker
from watcher.store import open_store
from watcher.store.protocol import Store

Sleep = Callable[[float], Awaitable[None]]


class Waiter:
    """Polls one job until it is terminal, the timeout elapses, or the API stays unreachable for too long."""

    def __init__(
        self,
        client: RunloopClient,
        options: WaitOptions,
        view: WaitView,
        *,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        dashboard_url: str | None = None,
        first: FirstLook | None = None,
    ) -> None:
        self.client = client
        self.options = options
        self.view = view
        self.clock = clock or SystemClock()
        self._sleep = sleep
        self.dashboard_url = dashboard_url or dashboard_url_for(client.base_url)
        self._health = ApiHealth(options.give_up_after_ms)
        self._job_id = options.job_id
        self._started_ms = 0
        self._last: tuple[BenchmarkJobView, JobSummary] | None = None
        self._compared: JobCompared | None = None
        self._job_comparer: JobComparer | None = None
        self._passed: dict[str, int] = {}
        self._first = first  # the first request, made before this module was imported (first.py)

    async def run(self) -> WaitResult:
        """Wait, and say how it ended. API errors that will not heal (404, 401/403, bad shapes) end it with 4."""
        self._started_ms = self._first.started_ms if self._first is not None else self.clock.now_ms()
        async with open_store(":memory:") as store:
            tracker = JobTracker(store, dashboard_url=self.dashboard_url, comparer=self._comparer(store))
            try:
                if self.options.baseline.explicit_job_id is not None:
                    await self.client.get_job(self.options.baseline.explicit_job_id)  # a typo fails now, not at the end
                return await self._loop(tracker)
            except RunloopApiError as exc:
                return self._result(EXIT_UNKNOWN, str(exc))

    async def _loop(self, tracker: JobTracker) -> WaitResult:
        late_polls = 0
        while True:
            snapshot = await self._poll()
            if snapshot is not None:
                memory = await self._observe(tracker, snapshot)
                if snapshot.job.is_terminal and not (_outcomes_pending(snapshot.job) and late_polls < LATE_POLLS):
                    return self._verdict()
                late_polls += snapshot.job.is_terminal
                if (stalled := await self._stalled(tracker, memory)) is not None:
                    return stalled
            elif (outage := self._health.check(self.clock.now_ms())) is not None:
                observation = await tracker.record([outage], None, outage.at_ms)
                self.view.events(observation.events)
                return self._unreachable()
            pause_ms = self._pause_ms()
            if pause_ms <= 0:
                return self._timed_out()
            await self._sleep(pause_ms / 1000)

    async def _poll(self) -> Snapshot | None:
        """One look at the job; None when the API failed even after the client's retries (reported, not fatal)."""
        started_ms = self.clock.now_ms()
        try:
            job_id = self._job_id or await self._find_by_name()
            snapshot = await self._fetch(job_id)
        except TransientApiError as exc:
            self._health.failed(started_ms, str(exc))
            self.view.warning(f"{exc}; still waiting")
            return None
        self._health.succeeded(self.clock.now_ms())
        return snapshot

    async def _fetch(self, job_id: str) -> Snapshot:
        first, self._first = self._first, None
        job_body = first.job_body() if first is not None else None
        return await fetch_snapshot(self.client, job_id, self.clock, scenario_runs=True, job_body=job_body)

    async def _find_by_name(self) -> str:
        name = self.options.name
        async for job in self.client.iter_jobs(name=name, page_size=100):
            if job.name == name:
                self._job_id = job.id
                return job.id
        raise NotFoundError(f"no job named {name!r}")

    def _comparer(self, store: Store) -> JobComparer | None:
        """With --baseline: compare the job when it completes (also when it had completed before the wait began)."""
        bounds = self.options.baseline
        if bounds.baseline is None:
            return None
        finder = BaselineFinder(OutcomeArchive(store), self.client, dashboard_url=self.dashboard_url)
        self._job_comparer = JobComparer(finder, on_discovery=True, baseline_job_id=bounds.explicit_job_id)
        return self._job_comparer

    async def _observe(self, tracker: JobTracker, snapshot: Snapshot) -> JobMemory:
        observation = await tracker.observe(snapshot)
        self.view.events(observation.events)
        self._compared = next((e for e in observation.events if isinstance(e, JobCompared)), self._compared)
        memory = observation.memory
        assert memory is not None  # a poll's observation carries the job's memory
        summary = _summarize(snapshot.job, memory, self.dashboard_url)
        self._last = (snapshot.job, summary)
        self._passed.update(passed_by_run(snapshot.job, snapshot.scenario_runs))
        elapsed_ms = self.clock.now_ms() - self._started_ms
        self.view.progress(build_progress(snapshot, summary, memory, elapsed_ms, self._passed))
        return memory

    async def _stalled(self, tracker: JobTracker, memory: JobMemory) -> WaitResult | None:
        """Exit 5 once a running job has shown no change for `--stall-after` (told as `job.stalled` too)."""
        limit_ms = self.options.stall_after_ms
        if limit_ms is None:
            return None
        now_ms = self.clock.now_ms()
        told = stall(memory, now_ms, limit_ms)
        if told is None:
            return None
        event, updated = told
        self.view.events((await tracker.record([event], updated, now_ms)).events)
        counters = memory.counters
        reason = (
            f"stalled: nothing moved since {_utc(memory.last_change_ms)} ({_elapsed(now_ms - memory.last_change_ms)}"
            f" ago; --stall-after {format_duration_ms(limit_ms)}), {counters.n_done}/{counters.n_expected or '?'} done"
        )
        return self._result(EXIT_STALLED, reason)

    def interrupted(self, signum: int) -> WaitResult:
        """The result of a wait stopped by a signal: exit 128 + its number, the job as last seen."""
        name = signal.Signals(signum).name
        elapsed = _elapsed(self.clock.now_ms() - self._started_ms)
        seen = f"the job is still {self._last[0].state}" if self._last is not None else "the job was never seen"
        return self._result(128 + signum, f"interrupted by {name} after {elapsed}; {seen}")

    def _pause_ms(self) -> int:
        """How long to sleep before the next poll; zero or less once the timeout has elapsed."""
        if self.options.timeout_ms is None:
            return self.options.interval_ms
        remaining_ms = self._started_ms + self.options.timeout_ms - self.clock.now_ms()
        return min(self.options.interval_ms, remaining_ms)

    def _verdict(self) -> WaitResult:
        assert self._last is not None
        job, summary = self._last
        if job.state != JobState.COMPLETED:
            detail = f": {job.failure_reason}" if job.failure_reason else ""
            return self._result(EXIT_JOB_FAILED, f"the job ended {job.state}{detail}")
        incomparable = self._job_comparer.not_comparable if self._job_comparer is not None else None
        if incomparable is not None and self.options.baseline.explicit_job_id is not None:
            return self._result(EXIT_UNKNOWN, str(incomparable))  # the baseline named cannot judge this job
        misses = (*self.options.thresholds.misses(summary), *self._baseline_misses())
        if misses:
            reason = "the job completed but missed a threshold: " + "; ".join(miss.message for miss in misses)
            return self._result(EXIT_THRESHOLD_MISSED, reason, misses)
        judged = self.options.thresholds != Thresholds() or self.options.baseline.judged
        held = " and every threshold held" if judged else ""
        return self._result(EXIT_OK, f"the job completed{held}")

    def _baseline_misses(self) -> tuple[ThresholdMiss, ...]:
        bounds = self.options.baseline
        if bounds.baseline is None:
            return ()
        if self._compared is None:
            incomparable = self._job_comparer.not_comparable if self._job_comparer is not None else None
            if incomparable is not None:
                self.view.warning(f"not compared with its baseline: {incomparable}")
            else:
                self.view.warning("no baseline to compare with (no earlier completed job of this benchmark)")
            return ()
        return baseline_misses(bounds, self._compared)

    def _unreachable(self) -> WaitResult:
        health = self._health
        down_ms = self.clock.now_ms() - (health.first_failure_ms or self.clock.now_ms())
        reason = (
            f"API unreachable: every poll failed for {_elapsed(down_ms)} ({health.failures} polls); "
            f"last error: {health.last_error}"
        )
        return self._result(EXIT_UNKNOWN, reason)

    def _timed_out(self) -> WaitResult:
        state = self._last[0].state if self._last is not None else "unseen"
        limit = format_duration_ms(self.options.timeout_ms or 0)
        return self._result(EXIT_TIMEOUT, f"--timeout {limit} elapsed; the job is still {state}")

    def _result(self, exit_code: int, reason: str, misses: tuple[ThresholdMiss, ...] = ()) -> WaitResult:
        job, summary = self._last if self._last is not None else (None, None)
        return WaitResult(
            exit_code=exit_code,
            reason=reason,
            elapsed_ms=self.clock.now_ms() - self._started_ms,
            thresholds=self.options.thresholds,
            job_id=job.id if job is not None else self._job_id,
            job_name=job.name if job is not None else self.options.name,
            job=job,
            summary=summary,
            misses=misses,
            comparison=self._compared,
            passed=dict(self._passed),
        )


def _outcomes_pending(job: BenchmarkJobView) -> bool:
    """A completed job with a run still lacking its outcome: outcomes can land a poll or two late."""
    return job.state == JobState.COMPLETED and bool(runs_to_follow(job))


def _summarize(job: BenchmarkJobView, memory: JobMemory, dashboard_url: str) -> JobSummary:
    run_counts = {run_id: memo.counts for run_id, memo in memory.runs.items() if memo.counts is not None}
    return summarize(job, memory.counters, run_counts, dashboard_url)


def junit_verdicts(result: WaitResult) -> list[Verdict]:
    """The testcases of the wait itself: the job's end state, then each threshold that was judged."""
    state = result.state
    if result.exit_code in (EXIT_OK, EXIT_THRESHOLD_MISSED):
        job_case = Verdict("job state")
    elif result.exit_code == EXIT_JOB_FAILED and state is not None:
        failure_reason = result.job.failure_reason if result.job is not None else None
        job_case = Verdict("job state", "error", state, failure_reason or f"the job ended {state}")
    else:
        kind = _VERDICT_KINDS.get(result.exit_code, "unknown")
        job_case = Verdict("job state", "error", kind, result.reason)
    cases = [job_case]
    if result.thresholds_checked:
        cases.extend(_threshold_verdicts(result.thresholds, result.misses))
        cases.extend(baseline_verdicts(result.comparison, result.misses))
    return cases


def _threshold_verdicts(thresholds: Thresholds, misses: Sequence[ThresholdMiss]) -> list[Verdict]:
    given: Mapping[str, float | None] = {
        "min_score": thresholds.min_score,
        "max_failure_rate": thresholds.max_failure_rate,
    }
    cases = []
    for key, limit in given.items():
        if limit is None:
            continue
        missed = [miss.message for miss in misses if miss.threshold == key]
        name = f"{key.replace('_', '-')} {limit:g}"
        cases.append(Verdict(name, "failure", "threshold", "; ".join(missed)) if missed else Verdict(name))
    return cases


_VERDICT_KINDS: Final = {EXIT_TIMEOUT: "wait_timeout", EXIT_STALLED: "stalled", 130: "interrupted", 143: "interrupted"}


async def run_wait(
    client: RunloopClient,
    options: WaitOptions,
    view: WaitView,
    *,
    clock: Clock | None = None,
    sleep: Sleep = asyncio.sleep,
    interrupt: asyncio.Future[int] | None = None,
    first: FirstLook | None = None,
) -> WaitResult:
    """Wait, write the JUnit file if asked, and show the end; returns the result (its exit code is the process's).

    `interrupt`, once it holds a signal number, stops the wait: the summary so far is shown and the JUnit file
    written all the same, and the exit code is 128 + the signal's number. `first` is the job's first request when
    it was made already.
    """
    waiter = Waiter(client, options, view, clock=clock, sleep=sleep, first=first)
    try:
        result = await _until_interrupted(waiter, interrupt)
    finally:
        view.close()
    if options.junit_path is not None:
        result = _with_junit(result, options.junit_path)
    result = _with_markdown(result, options)
    view.finished(result)
    return result


async def _until_interrupted(waiter: Waiter, interrupt: asyncio.Future[int] | None) -> WaitResult:
    if interrupt is None:
        return await waiter.run()
    task = asyncio.create_task(waiter.run(), name="wait")
    try:
        either: list[asyncio.Future[Any]] = [task, interrupt]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return waiter.interrupted(interrupt.result())


def _with_junit(result: WaitResult, path: Path) -> WaitResult:
    """Write the JUnit file; a file that cannot be written turns the result into a usage error (exit 2)."""
    outcomes = (result.job.benchmark_outcomes or ()) if result.job is not None else ()
    try:
        name = result.job_name or result.job_id or "benchwatch"
        write_junit(path, name, outcomes, junit_verdicts(result), regressed=regressed_scenarios(result.comparison))
    except OSError as exc:
        reason = f"cannot write the JUnit file {str(path)!r}: {exc.strerror or exc}"
        return dataclasses.replace(result, exit_code=EXIT_USAGE, reason=reason)
    return result


def _with_markdown(result: WaitResult, options: WaitOptions) -> WaitResult:
    """Write `--summary-markdown` (a file that cannot be written is a usage error, exit 2, as for --junit) and
    append to `$GITHUB_STEP_SUMMARY` (a failure there is a warning: the step's own summary is not the verdict)."""
    if options.summary_markdown_path is None and options.step_summary_path is None:
        return result
    text = wait_markdown(result)
    if options.summary_markdown_path is not None:
        try:
            write_markdown(options.summary_markdown_path, text, append=False)
        except OSError as exc:
            reason = f"cannot write the markdown summary {str(options.summary_markdown_path)!r}: {exc.strerror or exc}"
            result = dataclasses.replace(result, exit_code=EXIT_USAGE, reason=reason)
    if options.step_summary_path is not None:
        try:
            write_markdown(options.step_summary_path, text, append=True)
        except OSError as exc:
            problem = exc.strerror or exc
            print(f"benchwatch: warning: cannot append to $GITHUB_STEP_SUMMARY: {problem}", file=sys.stderr)
    return result


def _elapsed(ms: int) -> str:
    return format_duration_ms(ms // 1000 * 1000)


def _utc(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))

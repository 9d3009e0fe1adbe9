"""`benchwatch wait`'s first steps, light to import: every usage check, then the job's first request.

A CI step waiting on a job should be on the wire at once. The rest of `wait` — the API models (pydantic), the
tracker and the rules engine it carries, the views (rich) — costs about half a second to import, so the command
checks its arguments and sends the first request with aiohttp and the client alone, and imports the rest while
that answer waits to be used (docs/performance.md, "Start-up").
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from watcher.api.client import RunloopClient
from watcher.api.errors import RunloopApiError
from watcher.cli.errors import UsageError
from watcher.cli.wait.defaults import MIN_INTERVAL_MS
from watcher.config.durations import parse_duration_ms
from watcher.core.clock import Clock


@dataclass(frozen=True, slots=True)
class CheckedArgs:
    """The arguments of `benchwatch wait` that need parsing, parsed and checked."""

    interval_ms: int
    timeout_ms: int | None  # None: no limit
    give_up_after_ms: int
    stall_after_ms: int | None  # None: never give up on a quiet job
    junit_path: Path | None
    summary_markdown_path: Path | None = None


def check_args(args: argparse.Namespace) -> CheckedArgs:
    """Parse and check every argument; raises UsageError (exit 2) before any request is made. (Which job is
    checked once known: with none named, one is picked from the running jobs first.)"""
    junit_path: Path | None = args.junit
    if junit_path is not None and not junit_path.parent.is_dir():
        raise UsageError(f"--junit: the folder {str(junit_path.parent)!r} does not exist")
    markdown_path: Path | None = getattr(args, "summary_markdown", None)
    if markdown_path is not None and not markdown_path.parent.is_dir():
        raise UsageError(f"--summary-markdown: the folder {str(markdown_path.parent)!r} does not exist")
    timeout_ms = _duration_ms("--timeout", args.timeout)
    checked = CheckedArgs(
        interval_ms=_duration_ms("--interval", args.interval),
        timeout_ms=timeout_ms or None,
        give_up_after_ms=_duration_ms("--give-up-after", args.give_up_after),
        stall_after_ms=_duration_ms("--stall-after", args.stall_after) or None,
        junit_path=junit_path,
        summary_markdown_path=markdown_path,
    )
    check_interval(checked.interval_ms)
    check_share("--min-score", args.min_score)
    check_share("--max-failure-rate", args.max_failure_rate)
    check_baseline(
        getattr(args, "baseline", None),
        getattr(args, "max_regressions", None),
        getattr(args, "fail_on_significant_drop", False),
    )
    return checked


def check_target(job_id: str | None, name: str | None) -> None:
    """Exactly one of a job id and a name."""
    if (job_id is None) == (name is None):
        raise UsageError("give either JOB_ID or --name, not both and not neither")


def check_interval(interval_ms: int) -> None:
    """Not so short that a typo (`--interval 1ms`) hammers the API."""
    if interval_ms < MIN_INTERVAL_MS:
        raise UsageError(f"--interval must be at least {MIN_INTERVAL_MS}ms")


def check_share(flag: str, value: float | None) -> None:
    """A threshold that is a share: between 0 and 1."""
    if value is not None and not 0 <= value <= 1:
        raise UsageError(f"{flag} must be between 0 and 1, got {value:g}")


def check_baseline(baseline: str | None, max_regressions: int | None, fail_on_significant_drop: bool) -> None:
    """The regression bounds need a baseline, and a count is never negative."""
    if baseline is None and (max_regressions is not None or fail_on_significant_drop):
        raise UsageError("--max-regressions and --fail-on-significant-drop need --baseline previous|JOB_ID")
    if max_regressions is not None and max_regressions < 0:
        raise UsageError(f"--max-regressions must not be negative, got {max_regressions}")


def _duration_ms(flag: str, raw: str) -> int:
    try:
        return parse_duration_ms(raw)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


@dataclass(frozen=True, slots=True)
class FirstLook:
    """The first `GET /v1/benchmark_jobs/{id}` of a wait, made early: when it started, and its body or its error."""

    started_ms: int
    body: bytes | None = None
    error: RunloopApiError | None = None

    def job_body(self) -> bytes:
        """The body, or the API error raised again: the first poll then goes as if it had made the request."""
        if self.error is not None:
            raise self.error
        assert self.body is not None
        return self.body


async def first_look(client: RunloopClient, job_id: str, clock: Clock) -> FirstLook:
    """Fetch the job's view, unparsed (parsing needs the models, not imported yet); an API error is kept for the
    first poll to meet, so it is reported exactly as any poll's would be."""
    started_ms = clock.now_ms()
    try:
        return FirstLook(started_ms, body=await client.get_job_raw(job_id))
    except RunloopApiError as exc:
        return FirstLook(started_ms, error=exc)

"""A realistic sample notification, for `benchwatch test-notify` and for looking at a notifier's output.

The made-up job goes through the real diff and summary, so the sample shows exactly what a notifier receives.
"""

from __future__ import annotations

from typing import Any

from watcher.core.models import BenchmarkJobView
from watcher.core.notification import Notification, notification_id
from watcher.core.snapshot import Snapshot
from watcher.diff.jobs import diff
from watcher.diff.summary import summarize

_DASHBOARD = "https://platform.runloop.ai"
_FAILURE = {
    "exception_type": "NonZeroAgentExitCodeError",
    "exception_message": "Agent exited with code 1: 401 Unauthorized from model provider",
}


def _outcome(run_id: str, agent: str, model: str, *, passed: int, failed: int, timed_out: int) -> dict[str, Any]:
    scenarios = [
        {"scenario_definition_id": f"scn_SAMPLE{i:02d}", "scenario_name": f"sample-scenario-{i:02d}",
         "scenario_run_id": f"scr_{run_id[4:]}{i:02d}", "state": "COMPLETED", "score": 1.0, "duration_ms": 240_000}
        for i in range(passed)
    ]  # fmt: skip
    scenarios += [
        {"scenario_definition_id": f"scn_SAMPLEF{i:02d}", "scenario_name": "train-tiny-gpt2",
         "scenario_run_id": f"scr_{run_id[4:]}F{i:02d}", "state": "FAILED", "failure_reason": _FAILURE}
        for i in range(failed)
    ]  # fmt: skip
    scenarios += [
        {"scenario_definition_id": f"scn_SAMPLET{i:02d}", "scenario_name": "cuda-oom-debug", "state": "TIMEOUT",
         "failure_reason": {"exception_type": "AgentTimeoutError", "exception_message": "no answer in 7200 s"}}
        for i in range(timed_out)
    ]  # fmt: skip
    return {
        "benchmark_run_id": run_id, "agent_name": agent, "model_name": model, "n_completed": passed,
        "n_failed": failed, "n_timeout": timed_out, "average_score": round(passed / (passed + failed + timed_out), 4),
        "duration_ms": 5_412_000, "scenario_outcomes": scenarios,
    }  # fmt: skip


def _job(state: str) -> BenchmarkJobView:
    outcomes = [
        _outcome("bmr_SAMPLE0001", "claude-code", "claude-sonnet-4-6", passed=16, failed=3, timed_out=1),
        _outcome("bmr_SAMPLE0002", "codex", "gpt-5", passed=14, failed=3, timed_out=3),
    ]
    return BenchmarkJobView.model_validate(
        {"id": "bmj_SAMPLE0001", "name": "benchwatch-test-notify", "state": state, "create_time_ms": 0,
         "benchmark_outcomes": outcomes if state == "completed" else []}
    )  # fmt: skip


def sample_notification(notifier: str, now_ms: int) -> Notification:
    """A `job.finished` notification for a made-up job with two agents and a few failures."""
    running = diff(None, Snapshot(job=_job("running"), at_ms=now_ms - 1))
    finished_job = _job("completed")
    finished = diff(running.memory, Snapshot(job=finished_job, at_ms=now_ms))
    event = next(event for event in finished.events if event.kind == "job.finished")
    summary = summarize(finished_job, finished.memory.counters, {}, _DASHBOARD)
    scores = ", ".join(f"{agent} {score:.3f}" for agent, score in sorted(summary.scores.items()))
    return Notification(
        id=notification_id("test-notify", notifier, event.job_id, event.id),
        rule="test-notify",
        notifier=notifier,
        severity="info",
        group_key=event.job_id,
        dedup_key=f"test-notify:{event.job_id}",
        created_ms=now_ms,
        title=f"{event.job_name}: finished: running → completed — {scores}",
        text="This is a test notification from `benchwatch test-notify`: if you can read it, delivery works.",
        events=(event,),
        summary=summary,
    )

"""A realistic sample notification, for `benchwatch test-notify` and for looking at a notifier's output."""

from __future__ import annotations

from watcher.events import Counters, JobFinished, RunResult
from watcher.notification import Notification, notification_id
from watcher.summary import AgentSummary, FailureExample, FailureGroup, JobSummary

_DASHBOARD = "https://platform.runloop.ai"


def sample_notification(notifier: str, now_ms: int) -> Notification:
    """A `job.finished` notification for a made-up job with two agents and a few failures."""
    runs = (
        RunResult(
            benchmark_run_id="bmr_SAMPLE0001",
            agent_name="claude-code",
            model_name="claude-sonnet-4-6",
            average_score=0.8125,
            n_completed=16,
            n_failed=3,
            n_timeout=1,
            duration_ms=5_412_000,
        ),
        RunResult(
            benchmark_run_id="bmr_SAMPLE0002",
            agent_name="codex",
            model_name="gpt-5",
            average_score=0.6875,
            n_completed=16,
            n_failed=2,
            n_timeout=2,
            duration_ms=6_003_000,
        ),
    )
    event = JobFinished(
        id=f"ev_sample_{now_ms}",
        job_id="bmj_SAMPLE0001",
        job_name="benchwatch-test-notify",
        at_ms=now_ms,
        from_state="running",
        state="completed",
        failure_reason=None,
        outcomes=runs,
    )
    summary = JobSummary(
        **dict(Counters(n_completed=32, n_failed=5, n_timeout=3, n_done=40, n_expected=40)),
        job_id=event.job_id,
        job_name=event.job_name,
        state="completed",
        failure_reason=None,
        failure_rate=0.2,
        scores={"claude-code": 0.8125, "codex": 0.6875},
        min_score=0.6875,
        agents=tuple(_agent(run) for run in runs),
        failures=(
            FailureGroup(
                exception_type="NonZeroAgentExitCodeError",
                count=5,
                examples=(
                    FailureExample(
                        scenario_name="train-tiny-gpt2",
                        agent_name="codex",
                        message="Agent exited with code 1: 401 Unauthorized from model provider",
                        url=f"{_DASHBOARD}/scenarios/scn_SAMPLE04/runs/scr_SAMPLE0104",
                    ),
                ),
            ),
            FailureGroup(exception_type="AgentTimeoutError", count=3, examples=()),
        ),
        dashboard_url=_DASHBOARD,
    )
    return Notification(
        id=notification_id("test-notify", notifier, event.job_id, event.id),
        rule="test-notify",
        notifier=notifier,
        severity="info",
        group_key=event.job_id,
        dedup_key=f"test-notify:{event.job_id}",
        created_ms=now_ms,
        title="benchwatch-test-notify: finished: running → completed — claude-code 0.812, codex 0.688",
        text="This is a test notification from `benchwatch test-notify`: if you can read it, delivery works.",
        events=(event,),
        summary=summary,
    )


def _agent(run: RunResult) -> AgentSummary:
    return AgentSummary(
        benchmark_run_id=run.benchmark_run_id,
        agent_name=run.agent_name,
        model_name=run.model_name,
        finished=True,
        average_score=run.average_score,
        n_completed=run.n_completed,
        n_failed=run.n_failed,
        n_timeout=run.n_timeout,
        duration_ms=run.duration_ms,
        url=f"{_DASHBOARD}/benchmarks/custom/single/runs/{run.benchmark_run_id}",
    )

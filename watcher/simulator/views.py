"""What the API shows of a simulated job at a given time: plain dicts shaped as the OpenAPI document says."""

from __future__ import annotations

from typing import Any

from watcher.simulator.plan import (
    SCORED_LINGER_MS,
    SCORING_SHARE,
    SETUP_FAILURE_REASON,
    Attempt,
    JobPlan,
    RunPlan,
    ScenarioPlan,
)

_OUTCOME_STATE = {"scored": "COMPLETED", "failed": "FAILED", "timeout": "TIMEOUT", "canceled": "CANCELED"}
_ABORTED_RUN_STATE = {"failed": "failed", "cancelled": "canceled", "timeout": "canceled"}


def job_state(plan: JobPlan, now_ms: int) -> str:
    """The job's state at `now_ms`."""
    if now_ms < plan.create_ms + int(plan.spec.init_s * 1000):
        return "initializing"
    if now_ms < plan.running_ms:
        return "queued"
    if plan.end_ms is not None and now_ms >= plan.end_ms:
        return plan.final_state
    return "running"


def job_view(plan: JobPlan, now_ms: int) -> dict[str, Any]:
    """`BenchmarkJobView` at `now_ms`."""
    state = job_state(plan, now_ms)
    started = [run for run in plan.runs if run.start_ms <= now_ms] if now_ms >= plan.running_ms else []
    late_ms = int(plan.spec.outcome_delay_s * 1000)
    finished = [run for run in started if _is_finished(plan, run, now_ms - late_ms)]
    outcomes: list[dict[str, Any]] | None = [_outcome(plan, run) for run in finished]
    if plan.final_state == "failed":
        outcomes = None  # a job that failed in setup never reports outcomes, only failure_reason
    # The real API's quirk: a finished run stays listed in in_progress_runs for a while.
    in_progress = [_in_progress_run(plan, run, now_ms) for run in started if _is_listed(plan, run, now_ms)]
    return {
        "id": plan.job_id,
        "name": plan.name,
        "state": state,
        "create_time_ms": plan.create_ms,
        "failure_reason": SETUP_FAILURE_REASON if state == "failed" else None,
        "job_source": _job_source(plan),
        "job_spec": _job_spec(plan),
        "benchmark_outcomes": outcomes,
        "in_progress_runs": in_progress,
    }


def _job_source(plan: JobPlan) -> dict[str, Any]:
    if plan.spec.benchmark_id is not None:
        return {"type": "benchmark", "benchmark_id": plan.spec.benchmark_id, "benchmark_name": None}
    return {"type": "scenarios", "scenario_ids": list(plan.scenario_ids)}


def run_view(plan: JobPlan, run: RunPlan, now_ms: int) -> dict[str, Any]:
    """`BenchmarkRunView` at `now_ms`."""
    state = _run_state(plan, run, now_ms)
    finish_ms = _finish_ms(plan, run)
    score = None
    if state == "completed":
        attempts = [_final_attempt(plan, scenario)[0] for scenario in run.scenarios]
        score = sum((a.score or 0.0) for a in attempts if a is not None) / max(1, len(run.scenarios))
    return {
        "id": run.run_id,
        "benchmark_id": plan.spec.benchmark_id,
        "name": f"{plan.name} / {run.agent.name}",
        "start_time_ms": run.start_ms,
        "duration_ms": (min(now_ms, finish_ms) if finish_ms is not None else now_ms) - run.start_ms,
        "state": state,
        "score": score,
        "metadata": {"benchmark_job_id": plan.job_id},
        "purpose": "benchmark_job",
        "environment_variables": None,
        "secrets_provided": None,
    }


def scenario_run_views(plan: JobPlan, run: RunPlan, now_ms: int) -> list[dict[str, Any]]:
    """Every scenario run of `run` that has started by `now_ms`, in start order."""
    progress_ms = _progress_ms(plan, now_ms)
    aborted = _is_aborted(plan, now_ms)
    views = [
        _scenario_run(
            plan=plan,
            run=run,
            scenario=scenario,
            attempt=attempt,
            now_ms=now_ms,
            progress_ms=progress_ms,
            aborted=aborted,
        )
        for scenario in run.scenarios
        for attempt in scenario.attempts
        if attempt.start_ms <= progress_ms and not attempt.setup  # a setup failure never got a scenario run
    ]
    views.sort(key=lambda view: (view["start_time_ms"], view["id"]))
    return views


def _scenario_run(
    *,
    plan: JobPlan,
    run: RunPlan,
    scenario: ScenarioPlan,
    attempt: Attempt,
    now_ms: int,
    progress_ms: int,
    aborted: bool,
) -> dict[str, Any]:
    state = _attempt_state(attempt, now_ms, progress_ms, aborted)
    scored = state in ("scored", "completed")
    result = None
    if scored:
        result = {
            "score": attempt.score,
            "scoring_function_results": [
                {"score": attempt.score, "scoring_function_name": "tests", "output": "", "state": "complete"}
            ],
        }
    end_ms = attempt.end_ms if attempt.end_ms <= progress_ms else progress_ms
    return {
        "id": attempt.scenario_run_id,
        "name": scenario.name,
        "scenario_id": scenario.definition_id,
        "devbox_id": "dbx_" + attempt.scenario_run_id[4:],
        "benchmark_run_id": run.run_id,
        "scoring_contract_result": result,
        "start_time_ms": attempt.start_ms,
        "duration_ms": end_ms - attempt.start_ms,
        "state": state,
        "metadata": {},
        "purpose": None,
        "environment_variables": None,
        "secrets_provided": None,
    }


def _attempt_state(attempt: Attempt, now_ms: int, progress_ms: int, aborted: bool) -> str:
    if progress_ms < attempt.end_ms:
        if aborted:
            return "canceled"
        scoring_from = attempt.end_ms - int((attempt.end_ms - attempt.start_ms) * SCORING_SHARE)
        return "scoring" if attempt.final_state == "scored" and progress_ms >= scoring_from else "running"
    if attempt.final_state == "scored":
        return "scored" if now_ms < attempt.end_ms + SCORED_LINGER_MS else "completed"
    return attempt.final_state


def _outcome(plan: JobPlan, run: RunPlan) -> dict[str, Any]:
    scenarios = [_scenario_outcome(plan, scenario) for scenario in run.scenarios]
    completed = [s for s in scenarios if s["state"] == "COMPLETED"]
    finish_ms = _finish_ms(plan, run)
    return {
        "benchmark_run_id": run.run_id,
        "agent_name": run.agent.name,
        "model_name": run.agent.model_name,
        "n_completed": len(completed),
        "n_failed": sum(1 for s in scenarios if s["state"] == "FAILED"),
        "n_timeout": sum(1 for s in scenarios if s["state"] == "TIMEOUT"),
        "average_score": round(sum(s["score"] for s in completed) / len(completed), 4) if completed else None,
        "duration_ms": None if finish_ms is None else finish_ms - run.start_ms,
        "scenario_outcomes": scenarios,
    }


def _scenario_outcome(plan: JobPlan, scenario: ScenarioPlan) -> dict[str, Any]:
    attempt, cut_short = _final_attempt(plan, scenario)
    if attempt is None or cut_short:
        state, score, reason = "CANCELED", None, None
    else:
        state, score = _OUTCOME_STATE[attempt.final_state], attempt.score
        reason = (
            dict(zip(("exception_type", "exception_message"), attempt.failure, strict=True))
            if attempt.failure
            else None
        )
    duration_ms = None
    if attempt is not None:
        end_ms = attempt.end_ms if plan.stop_ms is None else min(attempt.end_ms, plan.stop_ms)
        duration_ms = end_ms - attempt.start_ms
    return {
        "scenario_definition_id": scenario.definition_id,
        "scenario_name": scenario.name,
        "scenario_run_id": attempt.scenario_run_id if attempt is not None and not attempt.setup else None,
        "state": state,
        "score": score,
        "duration_ms": duration_ms,
        "failure_reason": reason,
    }


def _final_attempt(plan: JobPlan, scenario: ScenarioPlan) -> tuple[Attempt | None, bool]:
    """The last attempt that started before the job stopped, and whether the stop cut it short."""
    stop_ms = plan.stop_ms
    started = [a for a in scenario.attempts if stop_ms is None or a.start_ms <= stop_ms]
    if not started:
        return None, True
    last = started[-1]
    return last, stop_ms is not None and last.end_ms > stop_ms


def _in_progress_run(plan: JobPlan, run: RunPlan, now_ms: int) -> dict[str, Any]:
    finish_ms = _finish_ms(plan, run)
    end_ms = now_ms if finish_ms is None else min(now_ms, finish_ms)
    return {
        "benchmark_run_id": run.run_id,
        "state": _run_state(plan, run, now_ms),
        "start_time_ms": run.start_ms,
        "duration_ms": end_ms - run.start_ms,
        "agent_config": _agent_config(plan, run.agent.name, run.agent.model_name),
    }


def _run_state(plan: JobPlan, run: RunPlan, now_ms: int) -> str:
    if not _is_finished(plan, run, now_ms):
        return "running"
    if plan.stop_ms is not None and run.end_ms > plan.stop_ms:
        return _ABORTED_RUN_STATE.get(plan.final_state, "canceled")
    return "completed"


def _finish_ms(plan: JobPlan, run: RunPlan) -> int | None:
    """When the run finishes: its last scenario's end, or the job's abort; None while stalled for ever."""
    if plan.stop_ms is None or run.end_ms <= plan.stop_ms:
        return run.end_ms
    return plan.end_ms


def _is_listed(plan: JobPlan, run: RunPlan, now_ms: int) -> bool:
    finish_ms = _finish_ms(plan, run)
    return finish_ms is None or now_ms < finish_ms + int(plan.spec.run_linger_s * 1000)


def _is_finished(plan: JobPlan, run: RunPlan, now_ms: int) -> bool:
    finish_ms = _finish_ms(plan, run)
    return finish_ms is not None and now_ms >= finish_ms


def _progress_ms(plan: JobPlan, now_ms: int) -> int:
    return now_ms if plan.stop_ms is None else min(now_ms, plan.stop_ms)


def _is_aborted(plan: JobPlan, now_ms: int) -> bool:
    return plan.final_state in _ABORTED_RUN_STATE and plan.end_ms is not None and now_ms >= plan.end_ms


def _job_spec(plan: JobPlan) -> dict[str, Any]:
    return {
        "scenario_ids": list(plan.scenario_ids),
        "agent_configs": [_agent_config(plan, agent.name, agent.model_name) for agent in plan.spec.agents],
        "orchestrator_config": {
            "n_concurrent_trials": plan.spec.concurrency,
            "n_attempts": plan.spec.n_attempts,
            "timeout_multiplier": 1.0,
            "quiet": False,
        },
    }


def _agent_config(plan: JobPlan, name: str, model_name: str | None) -> dict[str, Any]:
    return {
        "type": "job_agent",
        "name": name,
        "agent_id": None,
        "model_name": model_name,
        "timeout_seconds": plan.spec.scenario_timeout_s,
        "kwargs": None,
        "agent_environment": None,
    }

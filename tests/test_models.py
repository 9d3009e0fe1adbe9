"""The API models read tolerantly: real examples, unknown fields and states, nulls, unknown union members."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tests.conftest import FIXTURES
from watcher.api.errors import SchemaError
from watcher.core.models import (
    BenchmarkJobSource,
    BenchmarkJobView,
    JobAgentConfig,
    JobState,
    OtherAgentConfig,
    OtherJobSource,
    ScenarioRunListView,
    ScenarioState,
)


@pytest.mark.parametrize("name", ["job-running.json", "job-completed.json"])
def test_example_documents_parse_from_bytes(name: str) -> None:
    job = BenchmarkJobView.model_validate_json((FIXTURES / name).read_bytes())
    assert job.id == "bmj_EXAMPLE0001"
    assert isinstance(job.job_source, BenchmarkJobSource)
    assert job.job_source.benchmark_name == "terminal-bench-2"
    assert job.job_spec is not None and job.job_spec.n_expected == 8
    assert job.benchmark_outcomes and job.benchmark_outcomes[0].agent_name == "claude-code"


def test_running_example_has_an_in_progress_job_agent_run() -> None:
    job = BenchmarkJobView.model_validate_json((FIXTURES / "job-running.json").read_bytes())
    assert job.state == JobState.RUNNING and not job.is_terminal
    (run,) = job.in_progress_runs or ()
    assert isinstance(run.agent_config, JobAgentConfig)
    assert (run.agent_name, run.model_name) == ("codex", "gpt-5")


def test_completed_example_keeps_failure_reasons() -> None:
    job = BenchmarkJobView.model_validate_json((FIXTURES / "job-completed.json").read_bytes())
    assert job.is_terminal
    failed = [
        s for o in job.benchmark_outcomes or () for s in o.scenario_outcomes or () if s.state == ScenarioState.FAILED
    ]
    assert failed and all(s.failure_reason is not None for s in failed)


def _minimal(**extra: object) -> bytes:
    return json.dumps({"id": "bmj_1", "name": "n", "state": "running", "create_time_ms": 1, **extra}).encode()


def test_unknown_fields_are_kept_and_unknown_states_pass_through() -> None:
    job = BenchmarkJobView.model_validate_json(
        _minimal(state="paused", priority="high", in_progress_runs=[
            {"benchmark_run_id": "bmr_1", "state": "draining", "start_time_ms": 5, "new_field": [1, 2]}
        ])
    )  # fmt: skip
    assert job.state == "paused" and not job.is_terminal
    assert job.model_extra == {"priority": "high"}
    assert job.in_progress_runs and job.in_progress_runs[0].state == "draining"


def test_null_and_missing_optional_fields_are_fine() -> None:
    job = BenchmarkJobView.model_validate_json(
        _minimal(
            benchmark_outcomes=None,
            in_progress_runs=None,
            job_spec=None,
            job_source=None,
            failure_reason=None,
        )
    )
    assert job.benchmark_outcomes is None and job.in_progress_runs is None
    assert BenchmarkJobView.model_validate_json(_minimal()).job_spec is None


def test_unknown_union_members_parse_into_generic_models() -> None:
    job = BenchmarkJobView.model_validate_json(
        _minimal(
            job_source={"type": "dataset", "dataset_id": "ds_1"},
            in_progress_runs=[
                {"benchmark_run_id": "r", "state": "running", "agent_config": {"type": "mcp", "url": "x"}}
            ],
        )
    )
    assert isinstance(job.job_source, OtherJobSource) and job.job_source.model_extra == {"dataset_id": "ds_1"}
    assert job.in_progress_runs and isinstance(job.in_progress_runs[0].agent_config, OtherAgentConfig)


def test_missing_identity_is_an_error() -> None:
    with pytest.raises(ValidationError, match="id"):
        BenchmarkJobView.model_validate_json(b'{"name": "n", "state": "running", "create_time_ms": 1}')


def test_scenario_run_page_exposes_scores() -> None:
    page = ScenarioRunListView.model_validate_json(
        b'{"runs": [{"id": "scr_1", "scenario_id": "scn_1", "state": "scored", "devbox_id": "d",'
        b' "metadata": {}, "scoring_contract_result": {"score": 0.5, "scoring_function_results": []}}],'
        b' "has_more": false}'
    )
    assert page.runs[0].score == 0.5 and page.has_more is False


def test_models_are_immutable() -> None:
    job = BenchmarkJobView.model_validate_json(_minimal())
    with pytest.raises(ValidationError):
        job.state = "completed"  # type: ignore[misc]


def test_a_number_that_is_not_finite_reads_as_absent() -> None:
    """`1e400` overflows to infinity, stored as JSON `null`: it stopped every delivery (issue 29). Read as absent:
    None for an optional number, a counter's default, None in an array; anything else still a SchemaError."""
    from watcher.api.client import parse_body

    outcome = (
        '{"benchmark_run_id": "r", "agent_name": "a", "average_score": %s, "n_completed": %s, "duration_ms": -1e400,'
        ' "scenario_outcomes": [{"scenario_definition_id": "s", "state": "COMPLETED", "score": NaN}], "extra": [1e400]}'
    )
    for number in ("1e400", "-1e400", "NaN", "Infinity"):
        body = '{"id": "j", "name": "n", "state": "completed", "create_time_ms": 1, "benchmark_outcomes": [%s]}' % (
            outcome % (number, number)
        )
        (read,) = parse_body("/v1/benchmark_jobs/j", body.encode(), BenchmarkJobView).benchmark_outcomes or ()
        assert (read.average_score, read.n_completed, read.duration_ms) == (None, 0, None)
        assert read.scenario_outcomes is not None and read.scenario_outcomes[0].score is None
        assert read.model_extra == {"extra": [None]}
    with pytest.raises(SchemaError, match="create_time_ms"):
        parse_body("/v1/benchmark_jobs/j", b'{"id": "j", "name": "n", "state": "s", "create_time_ms": 1e400}',
                   BenchmarkJobView)  # fmt: skip

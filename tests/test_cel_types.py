"""`when:` typed at load: fields per event kind, a boolean result, "did you mean" — and still lenient where CEL is
dynamic."""

from __future__ import annotations

import pytest

from rules.expr import compile_expression


@pytest.mark.parametrize(
    ("source", "kinds"),
    [
        ("event.delta < -0.1 && event.agent_name.startsWith('claude')", ["score.changed"]),
        ("summary.n_done >= 20 && job.failure_rate > 0.25", ["scenario.failed", "scenario.timed_out"]),
        ("event.failure_reason.exception_type == 'AgentError'", ["scenario.failed"]),
        ("event.outcomes.exists(o, o.average_score < 0.5)", ["job.finished"]),
        ("summary.scores.codex < 0.5", ["job.finished"]),  # a map's keys are not known in advance
        ("has(event.score) ? event.score > 0.5 : false", ["scenario.recovered", "scenario.failed"]),
        ("size(event.outcomes) > 0 && !(event.state in ['failed'])", ["job.finished"]),
        ("job.agents[0].average_score > 0.5", ["job.finished"]),
        ("event.state == 'failed'", ["job.finished", "score.changed"]),  # one of the kinds has it
        ("dyn(event).anything", ["job.finished"]),
    ],
)
def test_well_typed_expressions_pass(source: str, kinds: list[str]) -> None:
    compile_expression(source).check_types(kinds)


@pytest.mark.parametrize(
    ("source", "kinds", "message"),
    [
        ("event.delt < 0", ["score.changed"], "event has no field 'delt' in score.changed (did you mean 'delta'?)"),
        ("event.delta < 0", ["job.finished"], "event has no field 'delta' in job.finished"),
        ("event.n_failed + 1", ["job.progress"], "the expression gives a number or string, not a boolean"),
        ("event.job_name", ["job.finished"], "the expression gives string, not a boolean"),
        (
            "event.failure_reason.exeption_type == 'X'",
            ["scenario.failed"],
            "event.failure_reason has no field 'exeption_type' (did you mean 'exception_type'?)",
        ),
        ("event.outcomes.exists(o, o.scor < 0.5)", ["job.finished"], "o has no field 'scor' (did you mean 'score'?)"),
        ("evnt.state == 'failed'", ["job.finished"], "unknown name 'evnt' (did you mean 'event'?)"),
        (
            "job.agents[0].averge_score > 0.5",
            ["job.finished"],
            "job.agents[…] has no field 'averge_score' (did you mean 'average_score'?)",
        ),
        ("event.job_name.first == 'x'", ["job.finished"], "event.job_name is string: it has no field 'first'"),
    ],
)
def test_ill_typed_expressions_are_refused_with_the_reason(source: str, kinds: list[str], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        compile_expression(source).check_types(kinds)
    assert str(caught.value) == f"{source!r}: {message}"


def test_every_kind_of_the_union_is_known() -> None:
    from rules.celtypes import event_types
    from watcher.core.events import EVENT_KINDS

    assert set(event_types()) == set(EVENT_KINDS)

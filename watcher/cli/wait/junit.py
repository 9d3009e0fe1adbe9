"""A job's scenario outcomes as JUnit XML, so CI systems show a benchmark like a test run.

A `<testsuite>` per agent (benchmark run), a `<testcase>` per scenario. Like rl-cli, a scenario passes only when
COMPLETED with score 1.0: a lower score is a `<failure type="score">`. FAILED is a `<failure>` of its exception type,
TIMEOUT an `<error type="timeout">`, CANCELED `<skipped>`. A last suite holds the verdicts of the wait itself (the
job's end state, each threshold), so a job that failed before any outcome still reports why.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from watcher.core.models import BenchmarkOutcome, ScenarioOutcome, ScenarioState

VERDICT_SUITE: Final = "benchwatch wait"
PASSING_SCORE: Final = 1.0
Regressed = Mapping[tuple[str, str | None], frozenset[str]]  # (agent name, model) → scenario definition ids
_NOT_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class Verdict:
    """A testcase that is not a scenario: passed when `element` is None, else a failure or an error."""

    name: str
    element: Literal["failure", "error"] | None = None
    type: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class _Case:
    name: str
    time_s: float
    element: Literal["failure", "error", "skipped"] | None = None
    type: str = ""
    message: str = ""


def junit_tree(
    job_name: str,
    outcomes: Iterable[BenchmarkOutcome],
    verdicts: Sequence[Verdict],
    regressed: Regressed | None = None,
) -> ET.ElementTree:
    """The XML document: one suite per agent (first listing of a run wins), then the wait's verdicts. A scenario
    in `regressed` (per agent name and model: it passed in the baseline) fails with type `regression`."""
    root = ET.Element("testsuites", name=_xml_text(job_name))
    seen: set[str] = set()
    for outcome in outcomes:
        if outcome.benchmark_run_id in seen:
            continue
        seen.add(outcome.benchmark_run_id)
        marked = (regressed or {}).get((outcome.agent_name, outcome.model_name), frozenset())
        cases = [
            _marked(_scenario_case(s), s.scenario_definition_id in marked) for s in outcome.scenario_outcomes or ()
        ]
        time_s = outcome.duration_ms / 1000 if outcome.duration_ms is not None else sum(c.time_s for c in cases)
        _suite(root, outcome.agent_name, cases, time_s, {"benchmark_run_id": outcome.benchmark_run_id})
    verdict_cases = [_Case(v.name, 0.0, v.element, v.type, v.message) for v in verdicts]
    _suite(root, VERDICT_SUITE, verdict_cases, 0.0, {"job_name": job_name}, classname=job_name)
    _count(root, root.findall("testsuite"))
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(
    path: Path,
    job_name: str,
    outcomes: Iterable[BenchmarkOutcome],
    verdicts: Sequence[Verdict],
    *,
    regressed: Regressed | None = None,
) -> None:
    """Write the document to `path` whole: to a temporary file first, then renamed over it."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as file:
        junit_tree(job_name, outcomes, verdicts, regressed).write(file, encoding="utf-8", xml_declaration=True)
        file.write(b"\n")
    os.replace(partial, path)


def _marked(case: _Case, regressed: bool) -> _Case:
    """A regressed scenario's case: a failure of type `regression`, whatever it failed of (it passed before)."""
    if not regressed or case.element is None or case.element == "skipped":
        return case
    detail = f"{case.type}: {case.message}" if case.message else case.type
    return _Case(case.name, case.time_s, "failure", "regression", f"regressed (passed in the baseline); {detail}")


def _scenario_case(scenario: ScenarioOutcome) -> _Case:
    name = scenario.scenario_name or scenario.scenario_definition_id
    time_s = (scenario.duration_ms or 0) / 1000
    reason = scenario.failure_reason
    state = scenario.state
    if state == ScenarioState.COMPLETED:
        if scenario.score is not None and scenario.score >= PASSING_SCORE:
            return _Case(name, time_s)
        score = "no score" if scenario.score is None else f"score {scenario.score:g}"
        return _Case(name, time_s, "failure", "score", score)
    if state == ScenarioState.FAILED:
        kind = reason.exception_type if reason else "failed"
        return _Case(name, time_s, "failure", kind, reason.exception_message if reason else "")
    if state == ScenarioState.TIMEOUT:
        detail = f"{reason.exception_type}: {reason.exception_message}" if reason else "timed out"
        return _Case(name, time_s, "error", "timeout", detail)
    if state == ScenarioState.CANCELED:
        return _Case(name, time_s, "skipped", message="canceled")
    return _Case(name, time_s, "error", state.lower(), f"scenario ended in state {state}")


def _suite(
    root: ET.Element,
    name: str,
    cases: Sequence[_Case],
    time_s: float,
    properties: dict[str, str],
    *,
    classname: str | None = None,
) -> None:
    suite = ET.SubElement(root, "testsuite", name=_xml_text(name), time=_seconds(time_s))
    props = ET.SubElement(suite, "properties")
    for key, value in properties.items():
        ET.SubElement(props, "property", name=key, value=_xml_text(value))
    for case in cases:
        _testcase(suite, classname or name, case)
    _count(suite, suite.findall("testcase"))


def _testcase(suite: ET.Element, classname: str, case: _Case) -> None:
    element = ET.SubElement(
        suite, "testcase", classname=_xml_text(classname), name=_xml_text(case.name), time=_seconds(case.time_s)
    )
    if case.element == "skipped":
        ET.SubElement(element, "skipped", message=_xml_text(case.message))
    elif case.element is not None:
        problem = ET.SubElement(element, case.element, type=_xml_text(case.type), message=_xml_text(case.message))
        problem.text = _xml_text(case.message)


def _count(parent: ET.Element, children: Sequence[ET.Element]) -> None:
    """Set tests/failures/errors/skipped on a suite (from its testcases), tests/failures/errors on the root."""
    if parent.tag == "testsuites":  # Jenkins' schema allows no `skipped` here: the suites carry it
        for key in ("tests", "failures", "errors"):
            parent.set(key, str(sum(int(child.get(key, "0")) for child in children)))
        parent.set("time", _seconds(sum(float(child.get("time", "0")) for child in children)))
        return
    parent.set("tests", str(len(children)))
    for key, tag in (("failures", "failure"), ("errors", "error"), ("skipped", "skipped")):
        parent.set(key, str(sum(1 for child in children if child.find(tag) is not None)))


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def _xml_text(text: str) -> str:
    """Text XML 1.0 can hold: ElementTree escapes markup, but control characters would make the file invalid."""
    return _NOT_XML.sub("\ufffd", text)

"""Rule tests as JUnit XML for CI: a `<testsuite>` per test file, a `<testcase>` per test; a failed check is a
`<failure>` with the same text as on the terminal, a test file that cannot be read an `<error>`."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_NOT_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class CaseResult:
    """One test's result: passed when `failure` is empty."""

    name: str
    time_s: float
    failure: str = ""
    error: bool = False  # the file could not be read: nothing ran


@dataclass(frozen=True)
class SuiteResult:
    """One test file's results."""

    file: str
    cases: Sequence[CaseResult]


def write_junit(path: Path, suites: Sequence[SuiteResult]) -> None:
    """Write the XML to `path`, whole or not at all (a temporary file renamed over it)."""
    root = ET.Element("testsuites", name="benchwatch test")
    for suite in suites:
        failed = sum(1 for case in suite.cases if case.failure and not case.error)
        errors = sum(1 for case in suite.cases if case.error)
        element = ET.SubElement(
            root,
            "testsuite",
            name=_text(suite.file),
            tests=str(len(suite.cases)),
            failures=str(failed),
            errors=str(errors),
            time=f"{sum(case.time_s for case in suite.cases):.3f}",
        )
        for case in suite.cases:
            testcase = ET.SubElement(
                element, "testcase", classname=_text(suite.file), name=_text(case.name), time=f"{case.time_s:.3f}"
            )
            if case.failure:
                kind = "error" if case.error else "failure"
                first = case.failure.splitlines()[0]
                ET.SubElement(testcase, kind, message=_text(first)).text = _text(case.failure)
    ET.indent(root)
    temporary = path.with_name(f".{path.name}.tmp")
    ET.ElementTree(root).write(temporary, encoding="utf-8", xml_declaration=True)
    os.replace(temporary, path)


def _text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)

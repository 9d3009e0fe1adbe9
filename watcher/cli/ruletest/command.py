"""`benchwatch test FILE... [--junit PATH]`: exit 0 when every check holds, 1 when one does not (with a diff per
failing check), 2 when a test file cannot be used (every problem at its file:line, as `check` prints them)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from watcher.cli.errors import EXIT_OK, EXIT_USAGE
from watcher.cli.ruletest.junit import CaseResult, SuiteResult, write_junit
from watcher.cli.ruletest.load import LoadedTests, load_tests
from watcher.cli.ruletest.run import run_test
from watcher.cli.ruletest.verdict import Failure, failures
from watcher.config.loader import ConfigError

EXIT_FAILED = 1


async def test_command(args: argparse.Namespace) -> int:
    """Run every test of every file; print one line per test and a diff per failing check; a summary last."""
    suites: list[SuiteResult] = []
    unusable = failed = passed = 0
    for path in args.files:
        try:
            loaded = load_tests(path)
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            unusable += 1
            suites.append(SuiteResult(str(path), [CaseResult(str(path), 0.0, str(exc), error=True)]))
            continue
        cases = await _run_file(loaded)
        failed += sum(1 for case in cases if case.failure)
        passed += sum(1 for case in cases if not case.failure)
        suites.append(SuiteResult(str(path), cases))
    if args.junit is not None:
        write_junit(args.junit, suites)
    bad = f", {unusable} file{'s' if unusable != 1 else ''} not usable" if unusable else ""
    print(f"{passed} passed, {failed} failed{bad}")
    if unusable:
        return EXIT_USAGE
    return EXIT_FAILED if failed else EXIT_OK


async def _run_file(loaded: LoadedTests) -> list[CaseResult]:
    cases = []
    for test in loaded.tests:
        started = time.perf_counter()
        found = failures(test, await run_test(loaded.config, test))
        elapsed_s = time.perf_counter() - started
        where = f"{loaded.path}:{test.line}"
        if not found:
            print(f"PASS {test.test.name}  ({where})")
            cases.append(CaseResult(test.test.name, elapsed_s))
            continue
        text = "\n".join(_diff(loaded.path, failure) for failure in found)
        print(f"FAIL {test.test.name}  ({where})\n{text}")
        cases.append(CaseResult(test.test.name, elapsed_s, text))
    return cases


def _diff(path: Path, failure: Failure) -> str:
    head = f"  {path}:{failure.line}: {failure.check}"
    return "\n".join([head, *(f"    {line}" for line in failure.lines)])

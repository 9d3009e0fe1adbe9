"""`benchwatch test`: the examples' rule tests pass; a config that changes what is sent fails them with a readable
diff (expected, sent, and the decisions that led there); a test file that cannot be used is exit 2 with file:line
problems, never a traceback; `--junit` for CI."""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from watcher.cli.main import main

EXAMPLES = Path(__file__).parent.parent / "examples"
RECORDING = EXAMPLES / "recordings" / "job-failure.jsonl"
DOC = Path(__file__).parent.parent / "docs" / "rules.md"


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["test", *(str(arg) for arg in args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _copy_example(tmp_path: Path, name: str, change: tuple[str, str] | None = None) -> Path:
    """The example config and its test file side by side in `tmp_path`, the config changed as asked."""
    config = (EXAMPLES / name).read_text()
    if change is not None:
        assert change[0] in config
        config = config.replace(*change)
    (tmp_path / name).write_text(config)
    tests = (EXAMPLES / "tests" / name).read_text()
    tests = tests.replace(f"config: ../{name}", f"config: {name}").replace("../recordings/", f"{RECORDING.parent}/")
    path = tmp_path / f"test-{name}"
    path.write_text(tests)
    return path


def test_every_examples_rule_tests_pass_and_say_so_in_junit(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    files = sorted((EXAMPLES / "tests").glob("*.yaml"))
    configs = {path.name for path in EXAMPLES.glob("*.yaml")}
    assert {path.name for path in files} == configs  # a test file for each example config
    code, out, err = _run(capsys, *files, "--junit", tmp_path / "rules.xml")
    assert (code, err) == (0, ""), out
    assert out.splitlines()[-1] == "11 passed, 0 failed"
    assert all(line.startswith("PASS ") for line in out.splitlines()[:-1])
    suites = ET.parse(tmp_path / "rules.xml").getroot()
    assert [suite.get("failures") for suite in suites] == ["0"] * len(files)
    assert sum(int(suite.get("tests") or 0) for suite in suites) == 11


def test_removing_the_inhibition_fails_its_test_with_a_diff(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = (EXAMPLES / "inhibit-during-job-failure.yaml").read_text()
    entry = config[config.index("  - name: failed-job-quiets-its-scenarios") : config.index("  - name: blind-watcher")]
    path = _copy_example(tmp_path, "inhibit-during-job-failure.yaml", (entry, ""))
    code, out, _ = _run(capsys, path, "--junit", tmp_path / "rules.xml")
    assert code == 1
    assert out.splitlines()[-1] == "2 passed, 1 failed"
    failure = out.split("FAIL ")[1].split("\nPASS")[0].splitlines()
    assert failure[0] == f"a failed nightly pages once and its batched scenario failures stay quiet  ({path}:5)"
    assert failure[1:3] == [
        f"  {path}:11: expect_not {{rule: scenario-failures, job_name: nightly-a, because: inhibited}}",
        "    expected nothing of rule 'scenario-failures' about 'nightly-a', sent 1:",
    ]
    assert failure[3].endswith(" → oncall-slack [warning] 'nightly-a: failed: rust-borrow-fix-004 (flaky-agent)'")
    assert failure[4] == "    decisions of rule 'scenario-failures' (1 event matched):"
    assert (
        failure[5].startswith("      scenario.failed of nightly-a (ev_") and ": sent to oncall-slack (nt_" in failure[5]
    )
    (suite,) = ET.parse(tmp_path / "rules.xml").getroot()
    failed = [case.get("name") for case in suite if case.find("failure") is not None]
    assert failed == ["a failed nightly pages once and its batched scenario failures stay quiet"]


def test_the_docs_show_what_a_failing_test_prints(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = (EXAMPLES / "inhibit-during-job-failure.yaml").read_text()
    entry = config[config.index("  - name: failed-job-quiets-its-scenarios") : config.index("  - name: blind-watcher")]
    path = _copy_example(tmp_path, "inhibit-during-job-failure.yaml", (entry, ""))
    _, out, _ = _run(capsys, path)
    shown = DOC.read_text().split("Remove the first `inhibit:` entry")[1].split("```text\n")[1].split("```")[0]
    assert out.replace(str(path), "examples/tests/inhibit-during-job-failure.yaml") == shown


def test_a_shorter_window_fails_the_count_and_shows_what_was_sent(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = _copy_example(tmp_path, "inhibit-during-job-failure.yaml", ("group_wait: 10m", "group_wait: 0s"))
    code, out, _ = _run(capsys, path)
    assert code == 1
    assert (
        "    expected 1 notification of rule 'scenario-failures' about 'nightly-b' (titled with '3 scenarios failed'), "
        "sent 0\n    sent 2 of rule 'scenario-failures' about 'nightly-b' that differ:\n"
    ) in out
    assert "'nightly-b: failed: train-tiny-gpt2-003 (flaky-agent)'" in out
    held = out.split("FAIL at 02:12 the first failures of nightly-a are still in their window")[1]
    assert "expected nothing of rule 'scenario-failures' about 'nightly-a', sent 1:\n" in held


def test_a_rule_that_matches_nothing_says_what_turned_the_events_away(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = _copy_example(
        tmp_path, "inhibit-during-job-failure.yaml", ("where: {state: [failed, timeout]}", "where: {state: [timeout]}")
    )
    code, out, _ = _run(capsys, path)
    assert code == 1
    assert (
        "    rule 'job-failed' matched none of the event of its kinds about 'nightly-a':\n"
        '      1 × not matched: where.state: ["timeout"] does not hold for "failed"\n'
    ) in out


CONFIG = """\
notifiers:
  slack: {type: console}
  pager: {type: console}
rules:
  - {name: failures, on: scenario.failed, notify: slack}
  - {name: finished, on: job.finished, notify: [slack, pager]}
  - {name: quiet, on: job.progress, notify: slack}
"""
GOOD_TEST = f"""\
config: benchwatch.yaml
tests:
  - name: t
    snapshots: {RECORDING}
    expect: [{{rule: finished, notifier: pager}}]
"""


@pytest.mark.parametrize(
    ("test_file", "message"),
    [
        (GOOD_TEST.replace("rule: finished", "rule: finishd"),
         "test.yaml:5: tests[0].expect[0].rule: no rule 'finishd' in {dir}/benchwatch.yaml (did you mean 'finished'?)"),
        (GOOD_TEST.replace("notifier: pager", "notifier: pagr"),
         "test.yaml:5: tests[0].expect[0].notifier: no notifier 'pagr' in {dir}/benchwatch.yaml "
         "(did you mean 'pager'?)"),
        (GOOD_TEST.replace("rule: finished", "rule: quiet"),
         "test.yaml:5: tests[0].expect[0].notifier: rule 'quiet' does not notify 'pager' (it notifies slack)"),
        (GOOD_TEST.replace("expect: [{rule: finished, notifier: pager}]",
                           "expect_not: [{rule: quiet, because: bored}]"),
         "test.yaml:5: tests[0].expect_not[0].because: expected one of not_matched, stopped, silenced, held, repeat, "
         "muted, inactive, inhibited, once_per, canceled, not_open, dropped, got 'bored'"),
        (GOOD_TEST.replace("expect:", "expects:"),
         "test.yaml:5: tests[0].expects: unknown key 'expects' (did you mean 'expect'?)"),
        (GOOD_TEST.replace("    expect: [{rule: finished, notifier: pager}]\n", ""),
         "test.yaml:3: tests[0]: give expect or expect_not: a test that checks nothing passes whatever the rules do"),
        (GOOD_TEST.replace(str(RECORDING), "missing.jsonl"),
         "test.yaml:4: tests[0].snapshots: {dir}/missing.jsonl: No such file or directory"),
        (GOOD_TEST.replace(str(RECORDING), "\n      - {at_ms: 1, job: {name: no-id}}"),
         "test.yaml:4: tests[0].snapshots: {dir}/test.yaml:5: job.id: Field required"),
        (GOOD_TEST.replace("config: benchwatch.yaml", "config: nowhere.yaml"),
         "test.yaml:1: config: no config file '{dir}/nowhere.yaml'"),
        ("tests: [oops\n", "test.yaml:2: YAML syntax error: "),
    ],
    ids=["rule", "notifier", "not-notified", "because", "key", "no-checks", "no-recording", "bad-view", "config",
         "yaml"],
)  # fmt: skip
def test_a_bad_test_file_is_file_line_problems_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, test_file: str, message: str
) -> None:
    (tmp_path / "benchwatch.yaml").write_text(CONFIG)
    path = tmp_path / "test.yaml"
    path.write_text(test_file)
    code, out, err = _run(capsys, path)
    assert code == 2
    assert err.startswith(f"{tmp_path}/" + message.format(dir=tmp_path)), err
    assert "Traceback" not in err and out.splitlines()[-1] == "0 passed, 0 failed, 1 file not usable"


def test_a_config_reads_only_the_test_files_env(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "benchwatch.yaml").write_text("runloop:\n  api_key: ${RUNLOOP_API_KEY}\n" + CONFIG)
    path = tmp_path / "test.yaml"
    path.write_text(GOOD_TEST)
    code, _, err = _run(capsys, path)
    assert (code, err) == (
        2,
        f"{tmp_path}/benchwatch.yaml:2: runloop.api_key: environment variable RUNLOOP_API_KEY is not set\n",
    )
    path.write_text(GOOD_TEST.replace("tests:", "env: {RUNLOOP_API_KEY: test}\ntests:"))
    assert _run(capsys, path)[0] == 0


def test_inline_views_and_a_clock_stopped_early(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "benchwatch.yaml").write_text(
        CONFIG.replace("notify: [slack, pager]}", "notify: [slack, pager], group_wait: 1h}")
    )
    path = tmp_path / "test.yaml"
    path.write_text(textwrap.dedent("""\
        config: benchwatch.yaml
        tests:
          - name: the finish waits in its window at 02:30
            until: "2026-09-01T02:30:00Z"
            snapshots:
              - {id: bmj_1, name: n, state: running, create_time_ms: 1788228000000}
              - {at_ms: 1788228600000, job: {id: bmj_1, name: n, state: failed, create_time_ms: 1788228000000}}
            expect_not: [{rule: finished, because: held}]
          - name: and leaves at 03:10
            snapshots:
              - {id: bmj_1, name: n, state: running, create_time_ms: 1788228000000}
              - {at_ms: 1788228600000, job: {id: bmj_1, name: n, state: failed, create_time_ms: 1788228000000}}
            expect: [{rule: finished, notifier: pager, count: 1, title_contains: "n: finished: running → failed"}]
        """))  # fmt: skip
    code, out, _ = _run(capsys, path)
    assert code == 0, out

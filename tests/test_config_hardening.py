"""`benchwatch check` never crashes: every input is accepted or rejected with file:line — lists where durations go,
deep nesting, deep templates and expressions, absurd durations, header injection — and a seeded fuzz holds it."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from benchmarks.configfuzz import fuzz
from watcher.app.config import load_config
from watcher.cli.main import main
from watcher.config.loader import ConfigError

BASE = """\
notifiers:
  ops: {type: console}
rules:
  - name: r
    on: job.finished
    notify: ops
"""


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "benchwatch.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    return [str(problem).replace(str(tmp_path) + "/", "") for problem in caught.value.problems]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[30s, 5m]", "watch.poll_interval: expected a duration like 30s, 5m, 2h or 1d, got a list"),
        ("{every: 30s}", "watch.poll_interval: expected a duration like 30s, 5m, 2h or 1d, got a mapping"),
        ("1000000000d", "watch.poll_interval: duration '1000000000d' is longer than the longest allowed, 366d"),
        ("9" * 400 + "s", "watch.poll_interval: duration '" + "9" * 40 + "' is longer than the longest allowed"),
    ],
)
def test_a_duration_that_is_no_duration_is_a_config_error(tmp_path: Path, value: str, message: str) -> None:
    problems = _problems(tmp_path, f"watch:\n  poll_interval: {value}\n")
    assert len(problems) == 1 and problems[0].startswith(f"benchwatch.yaml:2: {message}")


@pytest.mark.slow
def test_deep_nesting_is_a_clear_error(tmp_path: Path) -> None:
    assert _problems(tmp_path, "watch:\n  jobs: " + "[" * 5000 + "]" * 5000 + "\n") == [
        "benchwatch.yaml:2: YAML syntax error: nested deeper than 50 levels"
    ]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("title", "{% if true %}" * 300 + "x" + "{% endif %}" * 300, "template nests too deeply to compile"),
        ("title", "{{ " + "(" * 1000 + "1" + ")" * 1000 + " }}", "template nests too deeply to compile"),
        ("when", "(" * 400 + "true" + ")" * 400, "expression nests too deeply"),
        ("when", "1 + " * 400 + "1 > 0", "expression nests too deeply"),
    ],
)
def test_templates_and_expressions_too_deep_to_run_are_rejected(
    tmp_path: Path, key: str, value: str, message: str
) -> None:
    problems = _problems(tmp_path, BASE + f"    {key}: '{value}'\n")
    assert problems == [f"benchwatch.yaml:7: rules[0].{key}: {message}" + problems[0].split(message, 1)[1]]


def test_every_problem_of_a_where_block_is_reported_at_its_line(tmp_path: Path) -> None:
    where = "    where:\n      average_score: {lt: high}\n      state: []\n      job_name: 're:('\n"
    assert _problems(tmp_path, BASE + where) == [
        "benchwatch.yaml:8: rules[0].where.average_score: lt: expected a number, got 'high'",
        "benchwatch.yaml:9: rules[0].where.state: an empty list matches nothing; remove the key or give values",
        "benchwatch.yaml:10: rules[0].where.job_name: invalid regular expression '(': missing ): ( (RE2 syntax)",
    ]


def test_a_silence_that_starts_after_it_ends_is_rejected(tmp_path: Path) -> None:
    silence = "silences:\n  - match: {job_name: x}\n    starts: 2026-12-02T00:00:00Z\n    until: 2026-12-01T00:00:00Z\n"
    assert _problems(tmp_path, BASE + silence) == [
        "benchwatch.yaml:8: silences[0]: starts (2026-12-02T00:00:00+00:00) must be before until "
        "(2026-12-01T00:00:00+00:00)"
    ]


def test_line_breaks_in_addresses_and_header_names_are_rejected(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        notifiers:
          mail:
            type: email
            host: smtp.example.com
            from: "bench@example.com\\r\\nBcc: victim@example.com"
            to: ["ops@example.com", "x@y.z\\nBcc: a@b.c"]
          hook:
            type: webhook
            url: https://example.com/hook
            headers:
              "X-Team\\r\\nX-Evil": "1"
              X-Ok: "a\\r\\nX-Evil: 2"
        """
    )
    problems = _problems(tmp_path, text)
    assert [problem.split(": ", 2)[:2] for problem in problems] == [
        ["benchwatch.yaml:5", "notifiers.mail.from"],
        ["benchwatch.yaml:6", "notifiers.mail.to"],
        ["benchwatch.yaml:10", "notifiers.hook.headers"],
    ]
    assert "line breaks" in problems[0] and "X-Evil: 2" not in "\n".join(problems)  # header values are secrets


def test_check_says_what_an_empty_file_means(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "benchwatch.yaml"
    path.write_text("# nothing yet\n")
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "OK" not in out and "sets nothing" in out and "no job is watched" in out


def test_check_exits_2_with_file_and_line_for_a_list_where_a_duration_goes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "benchwatch.yaml"
    path.write_text("watch:\n  stall_after: [1m]\n")
    assert main(["check", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"{path}:2: watch.stall_after: expected a duration")


@pytest.mark.slow
def test_a_hundred_mutated_configs_load_or_fail_with_a_config_error(tmp_path: Path) -> None:
    """Seeded mutations of the examples (hostile values, deleted and unknown keys, deep nesting, truncation):
    each is accepted or rejected with a ConfigError — never a traceback."""
    started = time.monotonic()
    report = fuzz(tmp_path, seed=20261130, count=100)
    assert report.crashes == []
    assert report.total == 100 and report.accepted > 5 and report.rejected > 50
    assert time.monotonic() - started < 10


def test_check_never_prints_a_file_read_for_a_key_that_is_not_a_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`when_file: /proc/self/environ` was read into `when`, and the expression's error printed it: every variable."""
    monkeypatch.setenv("BENCHWATCH_CANARY", "hunter2-canary")
    path = tmp_path / "benchwatch.yaml"
    path.write_text(BASE + "    when_file: /proc/self/environ\n")
    assert main(["check", str(path)]) == 2
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "when_file: only a secret key can be read from a file" in output and "hunter2-canary" not in output


@pytest.mark.parametrize("job_id", ['""', "' '", "' bmj_1'"])
def test_an_empty_or_padded_job_id_is_a_config_error(tmp_path: Path, job_id: str) -> None:
    """`watch.jobs: [""]` passed `check`, then every cycle failed with a traceback."""
    problems = _problems(tmp_path, f"watch:\n  jobs: [{job_id}]\n")
    assert len(problems) == 1 and problems[0].startswith("benchwatch.yaml:2: watch.jobs[0]: String should")

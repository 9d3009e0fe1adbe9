"""`benchwatch check` as a person reads it: rules in the file's own YAML terms, config mistakes in plain words."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher.cli.main import main

CONFIG = """\
runloop: {base_url: "http://127.0.0.1:9"}
watch:
  jobs: JOBS
notifiers:
  screen: {type: console}
rules:
  - name: bad-end
    on: job.finished
    where: {state: [failed, timeout], average_score: {lt: 0.5}, agent_name: "on", job_name: "nightly run"}
    notify: screen
"""


def _check(tmp_path: Path, capsys: pytest.CaptureFixture[str], jobs: str) -> tuple[int, str, str]:
    path = tmp_path / "benchwatch.yaml"
    path.write_text(CONFIG.replace("JOBS", jobs))
    code = main(["check", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_describes_rules_as_the_file_writes_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _check(tmp_path, capsys, "[bmj_1]")
    assert (code, err) == (0, "")
    rule_line = out.splitlines()[-1]
    assert rule_line == (
        '  bad-end: on job.finished where state: [failed, timeout], average_score: {lt: 0.5}, agent_name: "on", '
        'job_name: "nightly run" → screen [info]'
    )
    assert "['" not in out and "{'" not in out


def test_a_string_where_a_list_belongs_says_a_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _check(tmp_path, capsys, "bmj_1")
    assert (code, out) == (2, "")
    expected = "watch.jobs: should be a list, not a string: write [a, b] or one '- a' per line"
    assert err == f"{tmp_path / 'benchwatch.yaml'}:3: {expected}\n"

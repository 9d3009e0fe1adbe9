"""The config file: one bad-config fixture per mistake with its exact message; all problems at once; secrets."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from watcher.app.config import load_config
from watcher.cli.main import main
from watcher.config.loader import ConfigError
from watcher.store import open_store

BAD = sorted((FIXTURES / "bad_configs").glob("*.yaml"))
BENCHWATCH = [sys.executable, "-m", "watcher"]


def _expected(path: Path) -> str:
    match = re.match(r"# expect: (\d+): (.*)\n", path.read_text())
    assert match, f"{path.name} must start with '# expect: LINE: message'"
    return f"{path}:{match.group(1)}: {match.group(2)}"


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_each_mistake_gets_its_exact_message(path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert _expected(path) in str(caught.value).splitlines()


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "benchwatch.yaml"
    path.write_text(
        "notifiers:\n  slack: {type: console}\n"
        "rules:\n"
        "  - {name: a, on: job.finshed, notify: [slak]}\n"
        "  - {name: a, on: job.finished, notify: slack, group_wait: soon}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert [f"{p.line}: {p.path}" for p in caught.value.problems] == [
        "4: rules[0].notify[0]", "4: rules[0].on", "5: rules[1].group_wait", "5: rules[1].name",
    ]  # fmt: skip


def test_on_and_yes_stay_strings_and_env_fills_values(tmp_path: Path) -> None:
    secret_file = tmp_path / "key"
    secret_file.write_text("R0UTING-KEY-FROM-FILE\n")
    path = tmp_path / "benchwatch.yaml"
    path.write_text(
        "runloop: {base_url: '${BASE:-https://api.runloop.ai}'}\n"
        "notifiers:\n  pager: {type: pagerduty, routing_key_file: key}\n"
        "  yes: {type: console}\n"
        "rules:\n  - name: on\n    on: job.finished\n    notify: [yes, pager]\n"
    )
    config = load_config(path, {}).config
    assert config.rules[0].name == "on" and config.rules[0].on == ("job.finished",)
    assert set(config.notifiers) == {"pager", "yes"}
    assert config.notifiers["pager"].routing_key.get_secret_value() == "R0UTING-KEY-FROM-FILE"  # type: ignore[union-attr]
    assert config.runloop.base_url == "https://api.runloop.ai"
    assert load_config(path, {"BASE": "http://127.0.0.1:8787"}).config.runloop.base_url == "http://127.0.0.1:8787"


def test_the_state_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "benchwatch.yaml"
    path.parent.mkdir()
    path.write_text("state: {path: ./data/state.db}\n")
    assert load_config(path, {}).state_path() == tmp_path / "conf" / "data" / "state.db"


def test_a_state_url_is_postgres_and_its_password_stays_secret(tmp_path: Path) -> None:
    path = tmp_path / "benchwatch.yaml"
    path.write_text("state:\n  url: postgresql://bw:${PGPASS}@db:5432/benchwatch\n")
    loaded = load_config(path, {"PGPASS": "s3cr3t-pw"})
    assert loaded.state_location() == "postgresql://bw:s3cr3t-pw@db:5432/benchwatch"
    assert "s3cr3t-pw" not in repr(loaded.config) and "s3cr3t-pw" not in str(loaded.config.state)
    assert repr(open_store(loaded.state_location())) == "PostgresStore('postgresql://bw:***@db:5432/benchwatch')"
    path.write_text("runloop: {}\n")
    assert load_config(path, {}).state_location() == tmp_path / "benchwatch.db"


MALFORMED_URLS = {
    "postgresql://bw:pa%_hunter2@db/benchwatch": "invalid percent-encoding",
    "postgresql://bw:hunter2@[::1/benchwatch": "between two brackets",
}


@pytest.mark.parametrize(("url", "problem"), MALFORMED_URLS.items())
def test_a_malformed_state_url_is_refused_without_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, problem: str
) -> None:
    """libpq's message quotes the part it cannot parse (here, the password); `check` accepted both URLs."""
    path = tmp_path / "benchwatch.yaml"
    path.write_text(f"watch: {{jobs: [bmj_a]}}\nstate:\n  url: '{url}'\n")
    assert main(["check", str(path)]) == 2
    assert main(["deliveries", "list", "--state", url]) == 2
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert output.count(problem) == 2 and "hunter2" not in output, output
    assert len(output.strip().splitlines()) == 2  # one line each


SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-SECRET-slack-token",
    "RESULTS_WEBHOOK_SECRET": "whsec_U0VDUkVUd2ViaG9va3NlY3JldA==",
    "RUNLOOP_API_KEY": "rl-SECRET-api-key",
}


@pytest.mark.parametrize("example", sorted((Path(__file__).parent.parent / "examples").glob("*.yaml")))
@pytest.mark.slow
def test_check_describes_examples_without_secrets(example: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", **SECRETS}
    result = subprocess.run([*BENCHWATCH, "check", str(example)], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{example}: OK") and "rules (" in result.stdout
    for secret in [*SECRETS.values(), "R0UT1NGKEY"]:
        assert secret not in result.stdout + result.stderr


@pytest.mark.slow
def test_check_lists_every_error_and_exits_2(tmp_path: Path) -> None:
    bad = FIXTURES / "bad_configs" / "unknown_notifier.yaml"
    result = subprocess.run([*BENCHWATCH, "check", str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == _expected(bad) and "Traceback" not in result.stderr

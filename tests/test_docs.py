"""Every Python example in the docs runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = sorted((Path(__file__).parent.parent / "docs").glob("*.md"))
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
EXAMPLES = [(path.name, index, code) for path in DOCS for index, code in enumerate(BLOCK.findall(path.read_text()))]


def test_the_docs_have_python_examples() -> None:
    assert EXAMPLES


@pytest.mark.parametrize(("doc", "index", "code"), EXAMPLES, ids=[f"{d}#{i}" for d, i, _ in EXAMPLES])
def test_python_example_runs(doc: str, index: int, code: str) -> None:
    exec(compile(code, f"{doc} example {index}", "exec"), {})


YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)
YAML_EXAMPLES = [
    (path.name, index, text) for path in DOCS for index, text in enumerate(YAML_BLOCK.findall(path.read_text()))
]
DOC_ENV = {
    "RUNLOOP_API_KEY": "k",
    "SLACK_BOT_TOKEN": "xoxb-doc",
    "SMTP_PASSWORD": "pw",
    "RESULTS_WEBHOOK_SECRET": "whsec_ZG9jcw==",
    "PGPASSWORD": "pg-doc",
    "MATTERMOST_APPRISE_URL": "mmosts://chat.example.com/abcdefghijklmnop",
}
SECRET_FILE = re.compile(r"(\w+_file): (\S+)")


@pytest.mark.parametrize(("doc", "index", "text"), YAML_EXAMPLES, ids=[f"{d}#{i}" for d, i, _ in YAML_EXAMPLES])
def test_yaml_example_is_a_valid_config(tmp_path: Path, doc: str, index: int, text: str) -> None:
    from watcher.app.config import load_config

    secret = tmp_path / "secret"
    secret.write_text("https://hooks.slack.com/services/T/B/X\n")
    path = tmp_path / "benchwatch.yaml"
    path.write_text(SECRET_FILE.sub(lambda match: f"{match.group(1)}: {secret}", text))
    load_config(path, DOC_ENV)

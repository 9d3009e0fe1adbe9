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
RULE_TESTS = re.compile(r"# Rule tests of .*: benchwatch test (examples/tests/\S+\.yaml)\n")
YAML_EXAMPLES = [
    (path.name, index, text)
    for path in DOCS
    for index, text in enumerate(YAML_BLOCK.findall(path.read_text()))
    if not RULE_TESTS.match(text)
]
RULE_TEST_EXAMPLES = [
    (path.name, text) for path in DOCS for text in YAML_BLOCK.findall(path.read_text()) if RULE_TESTS.match(text)
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


def test_rule_test_files_in_the_docs_are_the_examples_files() -> None:
    # `benchwatch test` runs the examples' test files (tests/test_ruletest.py): what the docs show is one of them.
    assert RULE_TEST_EXAMPLES
    for doc, text in RULE_TEST_EXAMPLES:
        match = RULE_TESTS.match(text)
        assert match is not None
        assert (DOCS[0].parent.parent / match.group(1)).read_text() == text, doc

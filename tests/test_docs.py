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

"""The published event schema and docs/events.md stay true to the models."""

from __future__ import annotations

import json
import re
from pathlib import Path

from watcher.core.events import EVENT_ADAPTER, EVENT_KINDS, events_json_schema

DOCS = Path(__file__).parent.parent / "docs"


def test_the_published_schema_is_the_generated_one() -> None:
    assert (DOCS / "events.schema.json").read_text() == events_json_schema(), (
        "run: benchwatch schema > docs/events.schema.json"
    )


def test_the_schema_names_every_kind() -> None:
    kinds = {
        definition["properties"]["kind"]["const"]
        for definition in json.loads(events_json_schema())["$defs"].values()
        if "kind" in definition.get("properties", {})
    }
    assert kinds == set(EVENT_KINDS)


def test_every_kind_is_documented_with_a_valid_example() -> None:
    text = (DOCS / "events.md").read_text()
    sections = dict(re.findall(r"### `([a-z_.]+)`\n(.*?)(?=\n### |\Z)", text, re.DOTALL))
    assert list(sections) == list(EVENT_KINDS)
    for kind, body in sections.items():
        (example,) = re.findall(r"```json\n(.*?)```", body, re.DOTALL)
        event = EVENT_ADAPTER.validate_json(example)
        assert event.kind == kind
        assert list(json.loads(example)) == list(json.loads(event.model_dump_json())), f"{kind}: field order"

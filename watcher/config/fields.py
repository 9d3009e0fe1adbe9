"""Field types of config files, built on pydantic."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, PlainSerializer

from watcher.config.durations import format_duration_ms, parse_duration_ms

DurationMs = Annotated[int, BeforeValidator(parse_duration_ms), PlainSerializer(format_duration_ms, return_type=str)]
"""A config field holding a duration, validated from `30s`-style strings into milliseconds."""


def _time_zone_given(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("give a time zone, e.g. 2026-12-01T00:00:00Z")
    return value


AwareTime = Annotated[datetime, AfterValidator(_time_zone_given)]
"""A moment in a config or a rule test: a time zone is required (a bare local time would mean what the machine says)."""

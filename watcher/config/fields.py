"""Field types of config files, built on pydantic."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

from watcher.config.durations import format_duration_ms, parse_duration_ms

DurationMs = Annotated[int, BeforeValidator(parse_duration_ms), PlainSerializer(format_duration_ms, return_type=str)]
"""A config field holding a duration, validated from `30s`-style strings into milliseconds."""

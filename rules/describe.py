"""Plain-language descriptions of rules and silences, for `benchwatch check`."""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any, Final

from rules.config import DEFAULT_RESOLVE_AFTER_MS, InhibitConfig, RuleConfig, SilenceConfig
from rules.match import FieldMatcher
from rules.timeintervals import TimeIntervalConfig, TimePeriod
from watcher.config.durations import format_duration_ms
from watcher.core.events import EVENT_KINDS

# A string YAML reads back as the same string without quotes (and that a reader takes for a word).
_PLAIN: Final = re.compile(r"[A-Za-z_*][\w.*/-]*")
_YAML_WORDS: Final = frozenset({"null", "true", "false", "yes", "no", "on", "off", "y", "n", "~"})


def describe_rule(rule: RuleConfig) -> str:
    """`name: on <kinds> [where …] [when …] → notifiers [severity]; grouping; throttling`."""
    kinds = sorted({kind for pattern in rule.on for kind in fnmatch.filter(EVENT_KINDS, pattern)})
    parts = [f"{rule.name}: on {', '.join(kinds)}"]
    if rule.where:
        parts.append(f" where {describe_matchers(rule.where)}")
    if rule.when is not None:
        parts.append(f" when {rule.when.source}")
    if rule.resolves:
        parts.append(f" → resolves {rule.resolves} via {', '.join(rule.notify)}")
    else:
        parts.append(f" → {', '.join(rule.notify)} [{rule.severity}]")
    grouping = _grouping(rule)
    if grouping:
        parts.append(f"; {grouping}")
    if rule.once_per is not None:
        parts.append(f"; once per {rule.once_per.source}")
    if rule.resolve_after_ms != DEFAULT_RESOLVE_AFTER_MS:
        parts.append(f"; incidents about no job close after {format_duration_ms(rule.resolve_after_ms)}")
    if rule.mute_time_intervals:
        parts.append(f"; muted during {', '.join(rule.mute_time_intervals)}")
    if rule.active_time_intervals:
        parts.append(f"; only during {', '.join(rule.active_time_intervals)}")
    if not rule.continue_:
        parts.append("; stops here (continue: false)")
    return "".join(parts)


def describe_inhibit(entry: InhibitConfig) -> str:
    """`label: drop <target> while <source> [with equal …]` and how long a source stays active."""
    equal = f" with equal {', '.join(entry.equal)}" if entry.equal else ""
    held = "while its incident is open"
    if entry.for_ms:
        held += f" or for {format_duration_ms(entry.for_ms)} after it was sent"
    return (
        f"{entry.label()}: drop {describe_matchers(entry.target)} after a notification about "
        f"{describe_matchers(entry.source)}{equal}, {held}"
    )


def describe_time_interval(interval: TimeIntervalConfig) -> str:
    """`name: <range> or <range>` with each range's fields as written."""
    return f"{interval.name}: " + " or ".join(_period(period) for period in interval.time_intervals)


def _period(period: TimePeriod) -> str:
    data = period.model_dump(by_alias=True, exclude_defaults=True, exclude={"location", "times"})
    fields = [f"{key.replace('_', ' ')} {', '.join(values)}" for key, values in data.items()]
    if period.times:
        fields.insert(0, ", ".join(f"{_clock(t.start_minute)}-{_clock(t.end_minute)}" for t in period.times))
    return f"[{'; '.join(fields) or 'always'} ({period.location})]"


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _grouping(rule: RuleConfig) -> str:
    key = ", ".join(rule.group_by) or "everything"
    parts = []
    if rule.group_wait_ms:
        parts.append(f"batched by {key} for {format_duration_ms(rule.group_wait_ms)}")
    if rule.repeat_interval_ms:
        parts.append(f"at most once per {format_duration_ms(rule.repeat_interval_ms)} per {key}")
    return ", ".join(parts)


def describe_matchers(matchers: dict[str, FieldMatcher]) -> str:
    """`path: value` pairs in the config's own YAML terms (`state: [failed, timeout]`), not Python's."""
    return ", ".join(f"{path}: {yaml_flow(matcher.raw)}" for path, matcher in matchers.items())


def yaml_flow(value: Any) -> str:
    """A value as YAML flow style writes it: `[a, b]`, `{lt: 0.5}`, `null`, `true`; odd strings JSON-quoted."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_flow(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{yaml_flow(key)}: {yaml_flow(item)}" for key, item in value.items()) + "}"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, str):
        return value if _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS else json.dumps(value)
    return str(value)


def describe_silence(silence: SilenceConfig) -> str:
    """What a silence mutes, until when, and why."""
    until = f" until {silence.until.isoformat()}" if silence.until else " (no end)"
    comment = f" — {silence.comment}" if silence.comment else ""
    return f"{describe_matchers(silence.match)}{until}{comment}"

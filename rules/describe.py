"""Plain-language descriptions of rules and silences, for `benchwatch check`."""

from __future__ import annotations

import fnmatch

from rules.config import RuleConfig, SilenceConfig
from rules.match import FieldMatcher
from watcher.config.durations import format_duration_ms
from watcher.core.events import EVENT_KINDS


def describe_rule(rule: RuleConfig) -> str:
    """`name: on <kinds> [where …] [when …] → notifiers [severity]; grouping; throttling`."""
    kinds = sorted({kind for pattern in rule.on for kind in fnmatch.filter(EVENT_KINDS, pattern)})
    parts = [f"{rule.name}: on {', '.join(kinds)}"]
    if rule.where:
        parts.append(f" where {describe_matchers(rule.where)}")
    if rule.when is not None:
        parts.append(f" when {rule.when.source}")
    if rule.resolves:
        parts.append(f" → resolves {rule.resolves!r} via {', '.join(rule.notify)}")
    else:
        parts.append(f" → {', '.join(rule.notify)} [{rule.severity}]")
    grouping = _grouping(rule)
    if grouping:
        parts.append(f"; {grouping}")
    if not rule.continue_:
        parts.append("; stops here (continue: false)")
    return "".join(parts)


def _grouping(rule: RuleConfig) -> str:
    key = ", ".join(rule.group_by) or "everything"
    parts = []
    if rule.group_wait_ms:
        parts.append(f"batched by {key} for {format_duration_ms(rule.group_wait_ms)}")
    if rule.repeat_interval_ms:
        parts.append(f"at most once per {format_duration_ms(rule.repeat_interval_ms)} per {key}")
    return ", ".join(parts)


def describe_matchers(matchers: dict[str, FieldMatcher]) -> str:
    """`path=value` pairs as written in the config."""
    return ", ".join(f"{path}={matcher.raw!r}" for path, matcher in matchers.items())


def describe_silence(silence: SilenceConfig) -> str:
    """What a silence mutes, until when, and why."""
    until = f" until {silence.until.isoformat()}" if silence.until else " (no end)"
    comment = f" — {silence.comment}" if silence.comment else ""
    return f"{describe_matchers(silence.match)}{until}{comment}"

"""Durations as people write them in config files: `30s`, `5m`, `2h`, `1d`, `1h30m`, `250ms`.

Plain functions, no pydantic: command-line flags use them before anything heavy is imported. The config field type
built on them is `watcher.config.fields.DurationMs`."""

from __future__ import annotations

import re
from typing import Any, Final

_UNIT_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
# No setting needs more than a year; beyond that a value is a typo, and a timer that far out overflows the
# scheduler's datetime arithmetic — `check` must not accept what `run` cannot run.
MAX_DURATION_MS: Final = 366 * 86_400_000
_SHOWN_CHARS: Final = 40  # a 10k-character value is quoted short in the message


def _expected(value: Any, hint: str = "") -> ValueError:
    if isinstance(value, (list, dict)):
        shown = "a list" if isinstance(value, list) else "a mapping"
    else:
        shown = repr(value)[:_SHOWN_CHARS]
    return ValueError(f"expected a duration like 30s, 5m, 2h or 1d, got {shown}{hint}")


def parse_duration_ms(value: Any) -> int:
    """Milliseconds in a duration string, at most MAX_DURATION_MS; `0` alone is allowed without a unit. Raises
    ValueError (never anything else, whatever the value: a list, a mapping, a huge number)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _expected(value)
    if value in {0, "0"}:
        return 0
    if not isinstance(value, str):
        raise _expected(value, " (add a unit)")
    text = value.strip().replace(" ", "")
    parts = _PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise _expected(value)
    total_ms = sum(float(number) * _UNIT_MS[unit] for number, unit in parts)
    if not total_ms <= MAX_DURATION_MS:  # also false for inf and nan (a number with hundreds of digits)
        raise ValueError(f"duration {value[:_SHOWN_CHARS]!r} is longer than the longest allowed, 366d")
    return round(total_ms)


def format_duration_ms(ms: int) -> str:
    """The shortest exact spelling of a duration: 90000 → `1m30s`."""
    if ms == 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s", "ms"):
        size = _UNIT_MS[unit]
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(out)

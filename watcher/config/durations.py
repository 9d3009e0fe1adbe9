"""Durations as people write them in config files: `30s`, `5m`, `2h`, `1d`, `1h30m`, `250ms`.

Plain functions, no pydantic: command-line flags use them before anything heavy is imported. The config field type
built on them is `watcher.config.fields.DurationMs`."""

from __future__ import annotations

import re
from typing import Any, Final

_UNIT_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration_ms(value: Any) -> int:
    """Milliseconds in a duration string; `0` alone is allowed without a unit. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s, 5m, 2h or 1d, got {value!r}")
    if value in {0, "0"}:
        return 0
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 30s, 5m, 2h or 1d, got {value!r} (add a unit)")
    text = value.strip().replace(" ", "")
    parts = _PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"expected a duration like 30s, 5m, 2h or 1d, got {value!r}")
    return round(sum(float(number) * _UNIT_MS[unit] for number, unit in parts))


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

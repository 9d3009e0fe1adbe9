"""Named time intervals (`time_intervals:`), with Alertmanager's fields and semantics, for rules'
`mute_time_intervals` and `active_time_intervals`.

A named interval holds a list of time ranges and matches an instant when any range does. Within a range every given
field must match (an absent or empty field matches everything): `times` (`HH:MM` to `HH:MM`, the end excluded),
`weekdays` (`monday`, `monday:friday`; the week starts on Sunday, as in Alertmanager), `days_of_month` (`1`, `1:5`,
`-1` = the month's last day), `months` (`january`, `1:3`), `years` (`2026:2027`); ranges include both ends. All are
read in `location` (an IANA zone; default UTC).
"""

from __future__ import annotations

import calendar
import difflib
import heapq
import re
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator, model_validator

from watcher.config.loader import StrictModel

WEEKDAYS: Final = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
MONTHS: Final = tuple(name.lower() for name in calendar.month_name[1:])
_CLOCK = re.compile(r"^(\d{2}):(\d{2})$")

Span = tuple[int, int]  # inclusive, in the field's own numbering


def _minutes(text: Any) -> int:
    match = _CLOCK.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"expected a time of day as HH:MM, got {text!r}")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"{text!r} is not a time of day between 00:00 and 24:00")
    return hours * 60 + minutes


class TimeRange(StrictModel):
    """`{start_time: "09:00", end_time: "17:00"}`: from the start (included) to the end (excluded)."""

    start_minute: Annotated[int, BeforeValidator(_minutes)] = Field(alias="start_time")
    end_minute: Annotated[int, BeforeValidator(_minutes)] = Field(alias="end_time")

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.start_minute >= self.end_minute:
            raise ValueError("start_time must be before end_time (a range over midnight is two ranges)")
        return self


def _number(text: str, names: Sequence[str], lowest: int, highest: int) -> int:
    """One end of a range: a name of `names` (numbered from `lowest`), or a number from `lowest` to `highest`
    (0 excluded when negatives count from the end). Weekdays are names only, as in Alertmanager: is 0 Sunday or
    Monday? Nobody should have to guess."""
    word = text.strip().lower()
    if word in names:
        return names.index(word) + (lowest if lowest > 0 else 0)
    value = None if names is WEEKDAYS else _integer(word)
    if value is None:
        raise ValueError(_not_understood(text, word, names))
    if not lowest <= value <= highest or (value == 0 and lowest < 0):
        raise ValueError(f"{value} is out of range ({lowest} to {highest})")
    return value


def _integer(word: str) -> int | None:
    """`word` as an integer (as `int` reads it), or None."""
    try:
        return int(word)
    except ValueError:
        return None


def _not_understood(text: str, word: str, names: Sequence[str]) -> str:
    """What a range's end should have been, with the closest name when there is one."""
    choices = [f"a name ({names[0]} … {names[-1]})"] if names else []
    if names is not WEEKDAYS:
        choices.append("a number")
    close = difflib.get_close_matches(word, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"expected {' or '.join(choices)}, got {text!r}{hint}"


def _spans(value: Any, names: Sequence[str], lowest: int, highest: int, *, ordered: bool = True) -> tuple[Span, ...]:
    items = value if isinstance(value, list | tuple) else [value]
    spans = []
    for item in items:
        begin_text, _, end_text = str(item).partition(":")
        begin = _number(begin_text, names, lowest, highest)
        end = _number(end_text, names, lowest, highest) if end_text else begin
        if ordered and begin > end:
            raise ValueError(f"{item!r}: the start of a range must not be after its end")
        spans.append((begin, end))
    return tuple(spans)


def _days_of_month(value: Any) -> tuple[Span, ...]:
    spans = _spans(value, (), -31, 31, ordered=False)
    for begin, end in spans:
        # As Alertmanager: `1:-1` is resolved per month, `-3:5` is refused, and a range that is empty even in the
        # shortest month (28 days) is refused.
        if begin < 0 < end:
            raise ValueError(f"{begin}:{end}: the end must be negative when the start is")
        if (28 + begin if begin < 0 else begin) > (28 + end if end < 0 else end):
            raise ValueError(f"{begin}:{end}: the end is always before the start")
    return spans


def _serialised(spans: tuple[Span, ...], names: Sequence[str] = (), first: int = 0) -> list[str]:
    """Ranges as written: `monday:friday`, `-3:-1`, `2026`."""
    shown = [tuple(names[n - first] if names else str(n) for n in span) for span in spans]
    return [f"{begin}:{end}" if begin != end else begin for begin, end in shown]


Weekdays = Annotated[
    tuple[Span, ...],
    BeforeValidator(lambda v: _spans(v, WEEKDAYS, 0, 6)),
    PlainSerializer(lambda spans: _serialised(spans, WEEKDAYS)),
]
DaysOfMonth = Annotated[tuple[Span, ...], BeforeValidator(_days_of_month), PlainSerializer(_serialised)]
Months = Annotated[
    tuple[Span, ...],
    BeforeValidator(lambda v: _spans(v, MONTHS, 1, 12)),
    PlainSerializer(lambda spans: _serialised(spans, MONTHS, 1)),
]
Years = Annotated[tuple[Span, ...], BeforeValidator(lambda v: _spans(v, (), 1, 9999)), PlainSerializer(_serialised)]


class TimePeriod(StrictModel):
    """One range of an interval: every field given must match (an empty one matches everything)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    times: tuple[TimeRange, ...] = ()
    weekdays: Weekdays = ()
    days_of_month: DaysOfMonth = ()
    months: Months = ()
    years: Years = ()
    location: str = "UTC"

    @field_validator("location")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        _zone(value)
        return value

    def contains(self, at_ms: int) -> bool:
        """Whether the instant falls in this range, read in its location."""
        local = datetime.fromtimestamp(at_ms / 1000, tz=_zone(self.location))
        minute = local.hour * 60 + local.minute
        if self.times and not any(t.start_minute <= minute < t.end_minute for t in self.times):
            return False
        weekday = local.isoweekday() % 7  # Sunday is 0, as in Alertmanager
        if not _within(self.weekdays, weekday) or not _within(self.months, local.month):
            return False
        if not _within(self.years, local.year):
            return False
        return not self.days_of_month or _day_matches(self.days_of_month, local)

    def boundaries(self, after_ms: int) -> Iterator[int]:
        """The instants after `after_ms` at which `contains` may change, in order: each local day's start and the
        starts and ends of its time ranges."""
        zone = _zone(self.location)
        day = datetime.fromtimestamp(after_ms / 1000, tz=zone).date()
        marks = sorted({0, *(t.start_minute for t in self.times), *(t.end_minute for t in self.times)} - {1440})
        while True:
            for minute in marks:
                at_ms = _local_ms(day, minute, zone)
                if at_ms > after_ms:
                    yield at_ms
            day += timedelta(days=1)


def _local_ms(day: date, minute: int, zone: tzinfo) -> int:
    moment = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=zone)
    return round(moment.timestamp() * 1000)


def _within(spans: tuple[Span, ...], value: int) -> bool:
    return not spans or any(begin <= value <= end for begin, end in spans)


def _day_matches(spans: tuple[Span, ...], local: datetime) -> bool:
    days = calendar.monthrange(local.year, local.month)[1]
    for begin, end in spans:
        first = days + begin + 1 if begin < 0 else begin
        last = days + end + 1 if end < 0 else end
        if first > days:  # the 31st in a 30-day month: this range does not happen this month
            continue
        if max(first, 1) <= local.day <= min(last, days):
            return True
    return False


_ZONES: dict[str, tzinfo] = {}


def _zone(name: str) -> tzinfo:
    zone = _ZONES.get(name)
    if zone is None:
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r} (an IANA name such as Europe/Berlin)") from None
        _ZONES[name] = zone
    return zone


class TimeIntervalConfig(StrictModel):
    """A named interval: `{name: office-hours, time_intervals: [...]}`; it matches when any range does."""

    name: str = Field(min_length=1)
    time_intervals: tuple[TimePeriod, ...] = Field(min_length=1)

    def contains(self, at_ms: int) -> bool:
        """Whether the instant falls in any of its ranges."""
        return any(period.contains(at_ms) for period in self.time_intervals)

    def next_change_ms(self, at_ms: int, *, horizon_ms: int = 400 * 86_400_000) -> int | None:
        """When `contains` next answers otherwise than at `at_ms` (when a mute ends, when an active interval
        starts), or None if not within `horizon_ms`."""
        holds = self.contains(at_ms)
        boundaries = heapq.merge(*(period.boundaries(at_ms) for period in self.time_intervals))
        for boundary_ms in boundaries:
            if boundary_ms > at_ms + horizon_ms:
                return None
            if self.contains(boundary_ms) != holds:
                return boundary_ms
        return None

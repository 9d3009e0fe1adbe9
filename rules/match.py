"""Field matchers of `where:` and silences, compiled at load: globs, `re:` regexes, lists, number comparisons.

A matcher addresses a dotted path. Paths look in the event first, then in the job's summary; `event.` or
`summary.` (alias `job.`) pins the lookup to one of them.
"""

from __future__ import annotations

import fnmatch
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import re2

MISSING: Final = object()
_OPS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "eq": operator.eq,
    "ne": operator.ne,
}

Test = Callable[[Any], bool]


@dataclass(frozen=True)
class FieldMatcher:
    """One `path: expected` pair, compiled: `matches(event, summary)` tells whether it holds."""

    path: str
    raw: Any
    test: Test

    def matches(self, event: Mapping[str, Any], summary: Mapping[str, Any] | None) -> bool:
        """Whether the value at `path` satisfies the matcher (a missing value satisfies only `null`)."""
        value = resolve(self.path, event, summary)
        return self.test(None if value is MISSING else value)


def first_miss(
    matchers: Mapping[str, FieldMatcher], event: Mapping[str, Any], summary: Mapping[str, Any] | None
) -> tuple[FieldMatcher, Any] | None:
    """The first matcher that does not hold and the value it saw (`MISSING` when absent), or None when all hold."""
    for matcher in matchers.values():
        value = resolve(matcher.path, event, summary)
        if not matcher.test(None if value is MISSING else value):
            return matcher, value
    return None


def resolve(path: str, event: Mapping[str, Any], summary: Mapping[str, Any] | None) -> Any:
    """The value at a dotted path: the event's, else the summary's; `MISSING` when neither has it."""
    head, _, rest = path.partition(".")
    if head == "event" and rest:
        return _dig(event, rest)
    if head in ("summary", "job") and rest:
        return _dig(summary, rest) if summary is not None else MISSING
    value = _dig(event, path)
    if value is MISSING and summary is not None:
        value = _dig(summary, path)
    return value


def _dig(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list | tuple) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return MISSING
    return data


def compile_matcher(path: str, expected: Any) -> FieldMatcher:
    """Compile `expected` for `path`; raises ValueError with a message fit for a config error."""
    if not path or any(not part for part in path.split(".")):
        raise ValueError(f"invalid field path {path!r}")
    return FieldMatcher(path, expected, _compile(expected))


def _compile(expected: Any) -> Test:
    if isinstance(expected, list | tuple):
        if not expected:
            raise ValueError("an empty list matches nothing; remove the key or give values")
        tests = [_compile(item) for item in expected]
        return lambda value: any(test(value) for test in tests)
    if isinstance(expected, Mapping):
        return _compile_ops(expected)
    if isinstance(expected, str):
        return _compile_string(expected)
    if expected is None:
        return lambda value: value is None
    if isinstance(expected, bool):
        return lambda value: value is expected
    if isinstance(expected, int | float):
        return lambda value: _is_number(value) and value == expected
    raise ValueError(f"cannot match against {type(expected).__name__} {expected!r}")


def _compile_string(pattern: str) -> Test:
    if pattern.startswith("re:"):
        regex = compile_regex(pattern[3:])
        return lambda value: isinstance(value, str) and regex.search(value) is not None
    return lambda value: isinstance(value, str) and fnmatch.fnmatchcase(value, pattern)


def compile_regex(pattern: str) -> Any:
    """`pattern` compiled by RE2, which matches in time linear in the text: with Python's `re`, a silence such as
    `re:(a+)+$` took exponential time on a hostile job name, freezing the event loop. RE2 has no backreferences
    or lookaround; such a pattern is refused (ValueError) with RE2's reason."""
    options = re2.Options()
    options.log_errors = False  # the reason is in the error; RE2 would also print it to stderr
    try:
        return re2.compile(pattern, options=options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"invalid regular expression {pattern!r}: {reason} (RE2 syntax)") from None


def _compile_ops(spec: Mapping[str, Any]) -> Test:
    if not spec:
        raise ValueError("an empty comparison matches nothing")
    unknown = sorted(set(spec) - set(_OPS))
    if unknown:
        raise ValueError(f"unknown comparison {unknown[0]!r} (use lt, le, gt, ge, eq, ne)")
    checks: list[tuple[Callable[[Any, Any], bool], Any]] = []
    for name, bound in spec.items():
        if name in ("eq", "ne"):
            checks.append((_OPS[name], bound))
            continue
        if not _is_number(bound):
            raise ValueError(f"{name}: expected a number, got {bound!r}")
        checks.append((_OPS[name], bound))
    numeric = any(name not in ("eq", "ne") for name in spec)

    def test(value: Any) -> bool:
        if numeric and not _is_number(value):
            return False
        return all(op(value, bound) for op, bound in checks)

    return test


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

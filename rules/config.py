"""The `rules:` and `silences:` sections of the config: validated strictly, matchers, expressions and templates
compiled at load so that a typo is a config error, not a silent miss at 3 a.m."""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from rules.celtypes import kinds_matching
from rules.expr import Expression, compile_expression
from rules.match import FieldMatcher, compile_matcher
from rules.templates import Template, compile_template
from watcher.config.fields import AwareTime, DurationMs
from watcher.config.loader import StrictModel
from watcher.core.events import EVENT_KINDS

Severity = Literal["info", "warning", "critical"]

DEFAULT_DEDUP_KEY = "{{ rule }}:{{ job_id }}"
DEFAULT_RESOLVE_AFTER_MS = 3_600_000  # an incident about no job, of a rule nothing resolves, closes after this


def _matchers(value: Any) -> tuple[dict[str, FieldMatcher], list[tuple[str, Any, str]]]:
    """Every matcher of a mapping compiled, and the problems (path, expected, message) of the ones that fail."""
    if not isinstance(value, Mapping):
        raise ValueError("expected a mapping of field paths to expected values")
    compiled = {}
    problems: list[tuple[str, Any, str]] = []
    for path, expected in value.items():
        try:
            compiled[str(path)] = compile_matcher(str(path), expected)
        except ValueError as exc:
            problems.append((str(path), expected, str(exc)))
    return compiled, problems


def compile_where(value: Any) -> dict[str, FieldMatcher]:
    """A mapping of field paths to expected values, compiled into matchers; raises ValueError naming each bad path."""
    compiled, problems = _matchers(value)
    if problems:
        raise ValueError("; ".join(f"{path}: {message}" for path, _, message in problems))
    return compiled


def _where_block(value: Any) -> dict[str, FieldMatcher]:
    """`compile_where` for a config file: every bad matcher is reported at its own key (and line)."""
    compiled, problems = _matchers(value)
    if problems:
        raise ValidationError.from_exception_data(
            "where",
            [
                InitErrorDetails(
                    type=PydanticCustomError("invalid_matcher", "{message}", {"message": message}),
                    loc=(path,),
                    input=expected,
                )
                for path, expected, message in problems
            ],
        )
    return compiled


def _expression(value: Any) -> Expression:
    if not isinstance(value, str):
        raise ValueError("expected a CEL expression as a string")
    return compile_expression(value)


def _template(value: Any) -> Template:
    if not isinstance(value, str):
        raise ValueError("expected a template string")
    return compile_template(value)


def _kinds(value: tuple[str, ...]) -> tuple[str, ...]:
    for pattern in value:
        if not fnmatch.filter(EVENT_KINDS, pattern):
            raise ValueError(_unknown("event kind", pattern, set(EVENT_KINDS)))
    return value


Where = Annotated[
    dict[str, FieldMatcher],
    BeforeValidator(_where_block),
    PlainSerializer(lambda matchers: {path: m.raw for path, m in matchers.items()}),
]
When = Annotated[Expression, BeforeValidator(_expression), PlainSerializer(lambda expression: expression.source)]
TemplateField = Annotated[Template, BeforeValidator(_template), PlainSerializer(lambda template: template.source)]
EventKinds = Annotated[tuple[str, ...], Field(min_length=1), AfterValidator(_kinds)]


class RuleConfig(StrictModel):
    """One rule: which events (`on`, `where`, `when`), to whom (`notify`), how often and how loud."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = Field(min_length=1)
    on: EventKinds
    where: Where = Field(default_factory=dict)
    when: When | None = None
    notify: tuple[str, ...] = Field(min_length=1)
    group_by: tuple[str, ...] = ("job_id",)
    group_wait_ms: DurationMs = Field(0, alias="group_wait")
    repeat_interval_ms: DurationMs = Field(0, alias="repeat_interval")
    severity: Severity = "info"
    continue_: bool = Field(True, alias="continue")
    dedup_key: TemplateField = Field(default_factory=lambda: compile_template(DEFAULT_DEDUP_KEY))
    resolves: str | None = None
    resolve_after_ms: DurationMs = Field(DEFAULT_RESOLVE_AFTER_MS, alias="resolve_after", gt=0)
    title: TemplateField | None = None
    text: TemplateField | None = None
    mute_time_intervals: tuple[str, ...] = ()
    active_time_intervals: tuple[str, ...] = ()
    once_per: TemplateField | None = None

    @field_validator("on", mode="before")
    @classmethod
    def _one_kind_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("when")
    @classmethod
    def _typed(cls, when: Expression | None, info: ValidationInfo) -> Expression | None:
        # Only when `on` is valid: its own error says what is wrong, and the kinds it names are known.
        if when is not None and "on" in info.data:
            when.check_types(kinds_matching(info.data["on"]))
        return when

    @field_validator("notify", "group_by", "mute_time_intervals", "active_time_intervals", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def catches(self, kind: str) -> bool:
        """Whether events of `kind` are among those this rule listens to."""
        return any(fnmatch.fnmatchcase(kind, pattern) for pattern in self.on)


class SilenceConfig(StrictModel):
    """Silence matching events, for every rule, until a time (or for ever)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    match: Where
    starts: AwareTime | None = None
    until: AwareTime | None = None
    comment: str = ""

    @model_validator(mode="after")
    def _starts_before_until(self) -> Self:
        if self.starts is not None and self.until is not None and self.starts >= self.until:
            raise ValueError(f"starts ({self.starts.isoformat()}) must be before until ({self.until.isoformat()})")
        return self

    def active_at(self, now_ms: int) -> bool:
        """Whether the silence is in force at `now_ms`."""
        now_s = now_ms / 1000
        if self.starts is not None and now_s < self.starts.timestamp():
            return False
        return self.until is None or now_s < self.until.timestamp()


class InhibitConfig(StrictModel):
    """`{source: {...}, target: {...}, equal: [job_id], for: 1h}`: while a source is active, matching targets
    with equal values of the `equal` fields are dropped."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str | None = Field(None, min_length=1)
    source: Where
    target: Where
    equal: tuple[str, ...] = ()
    for_ms: DurationMs = Field(0, alias="for", ge=0)

    @field_validator("source", "target")
    @classmethod
    def _not_empty(cls, value: dict[str, FieldMatcher]) -> dict[str, FieldMatcher]:
        if not value:
            raise ValueError("give at least one matcher (an empty one would match every event)")
        return value

    def label(self) -> str:
        """Its name, or a stable label derived from what it says (its state rows are keyed by it)."""
        if self.name is not None:
            return self.name
        sides = [{path: m.raw for path, m in side.items()} for side in (self.source, self.target)]
        raw = json.dumps([*sides, self.equal], sort_keys=True, default=str)
        return "inhibit-" + hashlib.blake2b(raw.encode(), digest_size=6).hexdigest()


Loc = tuple[str | int, ...]


def cross_check_rules(data: Any) -> list[tuple[Loc, str]]:
    """Problems no single rule can see — duplicate names, unknown notifiers, `resolves` pointing nowhere — found
    in the raw config data, so they are reported even when other parts of the file fail validation."""
    if not isinstance(data, Mapping):
        return []
    notifiers = data.get("notifiers")
    notifier_names = {str(name) for name in notifiers} if isinstance(notifiers, Mapping) else set()
    rules = data.get("rules")
    if not isinstance(rules, list):
        return []
    named = [(index, rule) for index, rule in enumerate(rules) if isinstance(rule, Mapping)]
    names = [str(rule.get("name")) for _, rule in named if isinstance(rule.get("name"), str)]
    problems: list[tuple[Loc, str]] = _check_interval_names(data.get("time_intervals"))
    intervals = _names(data.get("time_intervals"))
    seen: set[str] = set()
    for index, rule in named:
        name = rule.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append((("rules", index, "name"), f"duplicate rule name {name!r}"))
            seen.add(name)
        problems.extend(_check_names(("rules", index, "notify"), rule.get("notify"), "notifier", notifier_names))
        problems.extend(_check_resolves(index, rule.get("resolves"), name, set(names)))
        problems.extend(_check_resolve_after(index, rule, named))
        for key in ("mute_time_intervals", "active_time_intervals"):
            problems.extend(_check_names(("rules", index, key), rule.get(key), "time interval", intervals))
    return problems + _check_inhibit_rules(data.get("inhibit"), set(names))


def _check_inhibit_rules(entries: Any, names: set[str]) -> list[tuple[Loc, str]]:
    """`rule: job-faild` in an inhibit matcher would silently match nothing: a plain name must be a rule's."""
    problems: list[tuple[Loc, str]] = []
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        for side in ("source", "target"):
            matchers = entry.get(side) if isinstance(entry, Mapping) else None
            wanted = matchers.get("rule") if isinstance(matchers, Mapping) else None
            loc: Loc = ("inhibit", index, side, "rule")
            if isinstance(wanted, list):
                problems += [
                    ((*loc, position), _unknown("rule", name, names))
                    for position, name in enumerate(wanted)
                    if _plain_name(name) and name not in names
                ]
            elif _plain_name(wanted) and wanted not in names:
                problems.append((loc, _unknown("rule", str(wanted), names)))
    return problems


def _plain_name(value: Any) -> bool:
    return isinstance(value, str) and not value.startswith("re:") and not set(value) & set("*?[")


def _names(entries: Any) -> set[str]:
    if not isinstance(entries, list):
        return set()
    return {str(entry["name"]) for entry in entries if isinstance(entry, Mapping) and "name" in entry}


def _check_interval_names(entries: Any) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if isinstance(name, str) and name in seen:
            problems.append((("time_intervals", index, "name"), f"duplicate time interval name {name!r}"))
        seen.add(str(name))
    return problems


def _check_names(loc: Loc, value: Any, what: str, known: set[str]) -> list[tuple[Loc, str]]:
    if isinstance(value, str):
        return [] if value in known else [(loc, _unknown(what, value, known))]
    if not isinstance(value, list):
        return []
    return [
        ((*loc, position), _unknown(what, name, known))
        for position, name in enumerate(value)
        if isinstance(name, str) and name not in known
    ]


def _check_resolves(index: int, target: Any, name: Any, names: set[str]) -> list[tuple[Loc, str]]:
    if not isinstance(target, str):
        return []
    if target == name:
        return [(("rules", index, "resolves"), "a rule cannot resolve itself")]
    if target not in names:
        return [(("rules", index, "resolves"), _unknown("rule", target, names))]
    return []


def _check_resolve_after(
    index: int, rule: Mapping[str, Any], named: list[tuple[int, Mapping[str, Any]]]
) -> list[tuple[Loc, str]]:
    """`resolve_after` closes the incidents of a rule nothing resolves: on a rule some `resolves:` names, the
    resolution closes them, and the setting would silently mean nothing."""
    name = rule.get("name")
    if "resolve_after" not in rule or not isinstance(name, str):
        return []
    closers = [str(other.get("name")) for _, other in named if other.get("resolves") == name]
    if not closers:
        return []
    return [
        (
            ("rules", index, "resolve_after"),
            f"rule {name!r} is resolved by {', '.join(map(repr, closers))}: its incidents close with the resolution, "
            "not after resolve_after (keep one of the two)",
        )
    ]


def _unknown(what: str, name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    if close:
        return f"unknown {what} {name!r} (did you mean {close[0]!r}?)"
    return f"unknown {what} {name!r} (known: {', '.join(sorted(known)) or 'none defined'})"

"""Adding, listing and expiring runtime silences in the store — one code path for the CLI and the HTTP API.

The store is the only copy: every replica reads the silences again before each poll cycle, so a silence added
anywhere (any replica's API, the CLI on the database) applies everywhere from the next poll.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from rules.config import compile_where
from rules.match import FieldMatcher
from rules.silences import (
    MAX_COMMENT_CHARS,
    MAX_CREATOR_CHARS,
    NAMESPACE,
    RuntimeSilence,
    expired_now,
    load_runtime_silences,
    matcher_json,
    parse_match_args,
    prunable,
)
from watcher.config.durations import parse_duration_ms
from watcher.store.protocol import Store

MAX_SILENCE_MS = 366 * 86_400_000  # a year: longer is a config-file silence, reviewed with the rules
HTTP_CREATOR = "HTTP API"  # who added a silence over HTTP without saying: the token does not name a person


class SilenceError(ValueError):
    """A silence request that cannot be honoured; the message says why, in one line."""


class UnknownSilence(LookupError):
    """No silence has that id."""


@dataclass(frozen=True, slots=True)
class SilenceRequest:
    """A validated request for a new silence."""

    match: dict[str, FieldMatcher]
    ends_ms: int
    comment: str
    created_by: str = ""


def end_of(now_ms: int, *, for_: str | None, until: str | None) -> int:
    """When a silence asked for `--for DURATION` or `--until TIME` ends; raises SilenceError."""
    if (for_ is None) == (until is None):
        raise SilenceError("give exactly one of for (a duration like 2h) or until (a time like 2026-12-01T08:00Z)")
    if for_ is not None:
        try:
            duration_ms = parse_duration_ms(for_)
        except ValueError as exc:
            raise SilenceError(f"for: {exc}") from None
        ends_ms = now_ms + duration_ms
    else:
        ends_ms = _time_ms(str(until))
    if ends_ms <= now_ms:
        raise SilenceError("the silence would end before it starts: give a later end")
    if ends_ms - now_ms > MAX_SILENCE_MS:
        raise SilenceError("a runtime silence lasts at most 366 days; put longer ones in the config file")
    return ends_ms


def _time_ms(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise SilenceError(f"until: expected a time like 2026-12-01T08:00:00Z, got {text!r}") from None
    if moment.tzinfo is None:
        raise SilenceError(f"until: give a time zone, e.g. {text.strip()}Z")
    return round(moment.timestamp() * 1000)


def request_from_args(
    words: Sequence[str], *, now_ms: int, for_: str | None, until: str | None, comment: str, created_by: str = ""
) -> SilenceRequest:
    """A silence request from the CLI's (or the form's) `KEY=VALUE` words; raises SilenceError."""
    try:
        match = parse_match_args(words)
    except ValueError as exc:
        raise SilenceError(f"match: {exc}") from None
    return SilenceRequest(match, end_of(now_ms, for_=for_, until=until), _comment(comment), _creator(created_by))


class SilenceBody(BaseModel):
    """The HTTP API's JSON body for a new silence: `matchers` (KEY=VALUE strings, or one string of them) or
    `match` (an object, as a rule's `where:`), `for` or `until`, a `comment` and who it is `created_by`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    matchers: list[StrictStr] | StrictStr | None = None
    match: Any = None
    for_: StrictStr | None = Field(None, alias="for")
    until: StrictStr | None = None
    comment: StrictStr | None = None
    created_by: StrictStr | None = None  # who added it (else "HTTP API": the token names no one)


def request_from_json(data: Any, *, now_ms: int) -> SilenceRequest:
    """A silence request from the HTTP API's JSON body; raises SilenceError."""
    try:
        body = SilenceBody.model_validate(data)
    except ValidationError as exc:
        raise SilenceError(_body_problem(exc)) from None
    comment = body.comment or ""
    created_by = body.created_by or HTTP_CREATOR
    for_, until = body.for_ or None, body.until or None  # an empty string: not given
    if "match" not in body.model_fields_set:
        words = body.matchers.split() if isinstance(body.matchers, str) else body.matchers
        if words is None:
            raise SilenceError(_NOT_MATCHERS)
        return request_from_args(words, now_ms=now_ms, for_=for_, until=until, comment=comment, created_by=created_by)
    if "matchers" in body.model_fields_set:
        raise SilenceError("give match (an object) or matchers (KEY=VALUE strings), not both")
    try:
        match = compile_where(body.match)
    except ValueError as exc:
        raise SilenceError(f"match: {exc}") from None
    if not match:
        raise SilenceError("match: give at least one matcher")
    return SilenceRequest(match, end_of(now_ms, for_=for_, until=until), _comment(comment), _creator(created_by))


_NOT_MATCHERS = "matchers: expected KEY=VALUE strings"


def _body_problem(exc: ValidationError) -> str:
    """The first thing wrong with a body, in one line: not an object, an unknown field, a field of the wrong type."""
    errors = exc.errors()
    if any(error["type"] == "model_type" for error in errors):
        return "expected a JSON object"
    unknown = sorted(str(error["loc"][0]) for error in errors if error["type"] == "extra_forbidden")
    if unknown:
        return f"unknown field {unknown[0]!r}"
    wrong = {str(error["loc"][0]) for error in errors if error["loc"]}
    for field in ("comment", "for", "until", "created_by"):
        if field in wrong:
            return f"{field}: expected a string"
    return _NOT_MATCHERS


def _creator(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > MAX_CREATOR_CHARS:
        raise SilenceError(f"created_by: at most {MAX_CREATOR_CHARS} characters")
    return text


def _comment(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > MAX_COMMENT_CHARS:
        raise SilenceError(f"comment: at most {MAX_COMMENT_CHARS} characters")
    return text


async def add_silence(store: Store, request: SilenceRequest, now_ms: int) -> RuntimeSilence:
    """Store a new silence, in force from `now_ms`; silences ended over a week ago are pruned with it."""
    silence = RuntimeSilence(
        id=f"sil_{secrets.token_hex(6)}",
        match=matcher_json(request.match),
        starts_ms=now_ms,
        ends_ms=request.ends_ms,
        created_ms=now_ms,
        comment=request.comment,
        created_by=request.created_by,
    )
    old = await load_runtime_silences(store)
    await store.commit(state_rows=[silence.row(), *prunable(old, now_ms)], announce=True)
    return silence


async def expire_silence(store: Store, silence_id: str, now_ms: int) -> RuntimeSilence:
    """End a silence now (an ended one stays as it is); raises UnknownSilence."""
    body = await store.get_state(NAMESPACE, silence_id)
    if body is None:
        raise UnknownSilence(silence_id)
    expired = expired_now(RuntimeSilence.model_validate_json(body), now_ms)
    await store.commit(state_rows=[expired.row()], announce=True)
    return expired


async def list_silences(store: Store) -> list[RuntimeSilence]:
    """Every runtime silence, newest first."""
    return await load_runtime_silences(store)

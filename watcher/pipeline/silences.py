"""Adding, listing and expiring runtime silences in the store — one code path for the CLI and the HTTP API.

The store is the only copy: every replica reads the silences again before each poll cycle, so a silence added
anywhere (any replica's API, the CLI on the database) applies everywhere from the next poll.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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


def request_from_json(data: Any, *, now_ms: int) -> SilenceRequest:
    """A silence request from the HTTP API's JSON body; raises SilenceError."""
    if not isinstance(data, Mapping):
        raise SilenceError("expected a JSON object")
    unknown = sorted(set(data) - {"matchers", "match", "for", "until", "comment", "created_by"})
    if unknown:
        raise SilenceError(f"unknown field {unknown[0]!r}")
    comment = _optional_text(data, "comment") or ""
    created_by = _optional_text(data, "created_by") or HTTP_CREATOR
    for_, until = _optional_text(data, "for"), _optional_text(data, "until")
    if "match" in data:
        if "matchers" in data:
            raise SilenceError("give match (an object) or matchers (KEY=VALUE strings), not both")
        try:
            match = compile_where(data["match"])
        except ValueError as exc:
            raise SilenceError(f"match: {exc}") from None
        if not match:
            raise SilenceError("match: give at least one matcher")
        ends_ms = end_of(now_ms, for_=for_, until=until)
        return SilenceRequest(match, ends_ms, _comment(comment), _creator(created_by))
    words = data.get("matchers")
    if isinstance(words, str):
        words = words.split()
    if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
        raise SilenceError("matchers: expected KEY=VALUE strings")
    return request_from_args(words, now_ms=now_ms, for_=for_, until=until, comment=comment, created_by=created_by)


def _optional_text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SilenceError(f"{key}: expected a string")
    return value


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
    await store.commit(state_rows=[silence.row(), *prunable(old, now_ms)])
    return silence


async def expire_silence(store: Store, silence_id: str, now_ms: int) -> RuntimeSilence:
    """End a silence now (an ended one stays as it is); raises UnknownSilence."""
    body = await store.get_state(NAMESPACE, silence_id)
    if body is None:
        raise UnknownSilence(silence_id)
    expired = expired_now(RuntimeSilence.model_validate_json(body), now_ms)
    await store.commit(state_rows=[expired.row()])
    return expired


async def list_silences(store: Store) -> list[RuntimeSilence]:
    """Every runtime silence, newest first."""
    return await load_runtime_silences(store)

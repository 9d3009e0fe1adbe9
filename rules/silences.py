"""Runtime silences: added from the CLI or the status page, kept as state rows in the store, applied by the
router beside the config file's silences from the next poll on.

Matchers are the rules' matchers (`rules.match`), written `KEY=VALUE` on the command line and validated exactly as
a silence's `match:` in the config is. A silence is never deleted by hand: expiring it ends it now, so the page can
still show what was silenced and why; expired silences are pruned a week after they ended.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol

from pydantic import ConfigDict, Field

from rules.config import Where, compile_where
from rules.match import FieldMatcher
from watcher.config.loader import StrictModel
from watcher.core.records import StateRow

NAMESPACE: Final = "silences.runtime"
KEEP_EXPIRED_MS: Final = 7 * 86_400_000
MAX_COMMENT_CHARS: Final = 500
MAX_CREATOR_CHARS: Final = 100

SilenceState = Literal["active", "pending", "expired"]


class SilenceRows(Protocol):
    """What reading runtime silences needs of the store."""

    async def load_state_rows(self, namespace: str) -> list[StateRow]:
        """Every state row of a namespace."""
        ...


class RuntimeSilence(StrictModel):
    """A silence added at run time: which events it drops (matchers), from when until when, who asked and why."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    id: str = Field(pattern=r"^sil_[0-9a-f]{12}$")
    match: Where = Field(min_length=1)
    starts_ms: int
    ends_ms: int
    created_ms: int
    comment: str = Field("", max_length=MAX_COMMENT_CHARS)
    created_by: str = Field("", max_length=MAX_CREATOR_CHARS)  # who added it: a login name, or "HTTP API"
    expired_by_hand: bool = False

    def active_at(self, now_ms: int) -> bool:
        """Whether the silence is in force at `now_ms` (from its start, up to but not including its end)."""
        return self.starts_ms <= now_ms < self.ends_ms

    def state_at(self, now_ms: int) -> SilenceState:
        """`pending` before its start, `active` while in force, `expired` after."""
        if now_ms < self.starts_ms:
            return "pending"
        return "active" if now_ms < self.ends_ms else "expired"

    def ends_text(self) -> str:
        """When it ends, as an ISO time in UTC (`2026-12-01T08:00:00Z`): for logs a person reads."""
        return datetime.fromtimestamp(self.ends_ms / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

    def matchers_text(self) -> str:
        """The matchers as `KEY=VALUE` words, the way the CLI takes them."""
        return " ".join(f"{path}={_value_text(m.raw)}" for path, m in self.match.items())

    def row(self) -> StateRow:
        """The store row holding this silence."""
        return StateRow(NAMESPACE, self.id, self.model_dump_json())

    def to_json(self) -> dict[str, Any]:
        """The silence as the HTTP API and `silences list --json` show it."""
        return self.model_dump(mode="json")


def parse_match_args(words: Sequence[str]) -> dict[str, FieldMatcher]:
    """`KEY=VALUE` words → compiled matchers; raises ValueError naming the bad word.

    VALUE is a glob or `re:` regex as a string, unless it is JSON (a number, true, false, null, a list, an object
    like {"lt": 0.5}) — JSON, not YAML, so `on` or `no` stay strings."""
    if not words:
        raise ValueError("give at least one matcher, e.g. job_name=nightly-*")
    raw: dict[str, Any] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{word!r}: expected KEY=VALUE, e.g. job_name=nightly-*")
        if key.strip() in raw:
            raise ValueError(f"{word!r}: {key.strip()} is matched twice")
        raw[key.strip()] = _value(value)
    return compile_where(raw)


def _value(text: str) -> Any:
    stripped = text.strip()
    if stripped[:1] in ('"', "[", "{", "-") or stripped[:1].isdigit() or stripped in ("true", "false", "null"):
        try:
            return json.loads(stripped)
        except ValueError:
            return text
    return text


def _value_text(raw: Any) -> str:
    return raw if isinstance(raw, str) else json.dumps(raw)


def silences_from_rows(rows: Iterable[StateRow]) -> list[RuntimeSilence]:
    """The silences stored in these rows, newest first; a row that no longer validates is skipped."""
    silences = []
    for row in rows:
        if row.body is None:
            continue
        try:
            silences.append(RuntimeSilence.model_validate_json(row.body))
        except ValueError:  # written by a newer version, or damaged: one bad row must not hide the others
            continue
    return sorted(silences, key=lambda silence: (-silence.created_ms, silence.id))


async def load_runtime_silences(store: SilenceRows) -> list[RuntimeSilence]:
    """Every runtime silence the store holds, newest first."""
    return silences_from_rows(await store.load_state_rows(NAMESPACE))


def expired_now(silence: RuntimeSilence, now_ms: int) -> RuntimeSilence:
    """The silence ended at `now_ms` by hand (an already ended one is returned unchanged)."""
    if silence.ends_ms <= now_ms:
        return silence
    return silence.model_copy(update={"ends_ms": max(now_ms, silence.starts_ms), "expired_by_hand": True})


def prunable(silences: Iterable[RuntimeSilence], now_ms: int) -> list[StateRow]:
    """Deletions of silences that ended more than a week ago."""
    return [StateRow(NAMESPACE, s.id, None) for s in silences if s.ends_ms + KEEP_EXPIRED_MS <= now_ms]


def matcher_json(matchers: Mapping[str, FieldMatcher]) -> dict[str, Any]:
    """Compiled matchers back to the raw values they were compiled from."""
    return {path: matcher.raw for path, matcher in matchers.items()}

"""Logging set-up: human text or one JSON object per line, with every configured secret redacted from the output.

Redaction works on what is finally written — message, arguments, extra fields, exception and stack text alike —
so a secret cannot slip through a path the formatter did not anticipate.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal, TextIO

from pydantic import BaseModel, SecretStr

from watcher.core.printable import PrintableFormatter

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED: Final = "***"
MIN_SECRET_CHARS: Final = 4  # shorter values would blank out ordinary words and numbers
# Libraries whose INFO is noise at our level: access lines per scrape, Slack SDK request chatter.
QUIET_LOGGERS: Final = ("aiohttp.access", "slack_sdk")
# APScheduler logs every run of the poll job, and "Adding job tentatively" / "Added job" at start; worth seeing
# only when debugging.
QUIET_UNLESS_DEBUG: Final = ("apscheduler.executors.default", "apscheduler.scheduler")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS: Final = frozenset(
    {*vars(logging.LogRecord("", 0, "", 0, "", (), None)), "message", "asctime", "taskName"}
)
_CORE_FIELDS: Final = ("time", "level", "logger", "message")


class Redactor:
    """Replaces every secret in a text with `***`, whether written raw or escaped inside a JSON string."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = tuple(secrets)
        forms = {form for secret in self.secrets if len(secret) >= MIN_SECRET_CHARS for form in _forms(secret)}
        # Longest first, so a secret that contains another is replaced whole.
        ordered = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        """`text` with every secret replaced."""
        if self._pattern is None:
            return text
        return self._pattern.sub(REDACTED, text)


def _forms(secret: str) -> set[str]:
    return {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}


class RedactingFormatter(logging.Formatter):
    """Formats with another formatter, then redacts the result.

    A `logging.Filter` runs before formatting and sees neither the rendered arguments nor the exception text; the
    last step of formatting sees everything that will be written.
    """

    def __init__(self, inner: logging.Formatter, redact: Redactor) -> None:
        super().__init__()
        self._inner = inner
        self._redact = redact

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secrets redacted now."""
        return self._redact.secrets

    def also_redact(self, redact: Redactor) -> None:
        """Redact with `redact` from now on (a reloaded config may bring new secrets; the old stay redacted)."""
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        """The inner formatter's line, with secrets replaced."""
        return self._redact(self._inner.format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (ISO 8601 UTC), level, logger, message, JSON-ready extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single line of JSON."""
        entry: dict[str, Any] = {
            "time": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def _iso_utc(created_s: float) -> str:
    return datetime.fromtimestamp(created_s, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The record's `extra=` fields that JSON can carry; the core fields cannot be overridden."""
    extras: dict[str, Any] = {}
    for name, value in vars(record).items():
        if name in _RECORD_ATTRS or name in _CORE_FIELDS or name.startswith("_"):
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        extras[name] = value
    return extras


class _BenchwatchHandler(logging.StreamHandler[TextIO]):
    """The handler `configure_logging` installs, told apart so that a second call replaces it."""


def configure_logging(
    *, fmt: Literal["text", "json"], level: int, secrets: Iterable[str], stream: TextIO | None = None
) -> None:
    """Send the root logger's records to `stream` (stderr by default) as text or JSON, secrets redacted."""
    root = logging.getLogger()
    for old in [handler for handler in root.handlers if isinstance(handler, _BenchwatchHandler)]:
        root.removeHandler(old)
    handler = _BenchwatchHandler(stream if stream is not None else sys.stderr)
    inner = JsonFormatter() if fmt == "json" else PrintableFormatter(TEXT_FORMAT)
    handler.setFormatter(RedactingFormatter(inner, Redactor(secrets)))
    root.addHandler(handler)
    root.setLevel(level)
    _quiet_libraries(level)


def redact_more(secrets: Iterable[str]) -> None:
    """Add secrets to those redacted by the handler `configure_logging` installed (a no-op without it)."""
    for handler in logging.getLogger().handlers:
        formatter = handler.formatter
        if isinstance(handler, _BenchwatchHandler) and isinstance(formatter, RedactingFormatter):
            formatter.also_redact(Redactor([*formatter.secrets, *secrets]))


def _quiet_libraries(level: int) -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # NOTSET when debugging, so that a later call at DEBUG undoes an earlier call's WARNING.
    for name in QUIET_UNLESS_DEBUG:
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING if level > logging.DEBUG else logging.NOTSET)
        if not any(isinstance(existing, _SaidByTheService) for existing in logger.filters):
            logger.addFilter(_SaidByTheService())


class _SaidByTheService(logging.Filter):
    """Drops APScheduler's warnings of a skipped or missed run: the service logs each itself, in its own words
    (`poll: the previous run is still going; this run was skipped`), so the reader is told once."""

    _SAID: Final = (
        'Execution of job "%s" skipped: maximum number of running instances',
        'Run time of job "%s" was missed by',
    )

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the two warnings the service says itself."""
        return not (isinstance(record.msg, str) and record.msg.startswith(self._SAID))


def secrets_of(config: object) -> list[str]:
    """Every `SecretStr` value inside a config (pydantic models, dicts, lists, tuples, sets), each once."""
    found: dict[str, None] = {}  # a dict keeps first-seen order
    _collect(config, found)
    return list(found)


def _collect(value: object, found: dict[str, None]) -> None:
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        if secret:
            found[secret] = None
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _collect(getattr(value, name), found)
        for extra in (value.model_extra or {}).values():
            _collect(extra, found)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _collect(key, found)
            _collect(item, found)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _collect(item, found)

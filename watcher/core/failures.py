"""How a failed HTTP exchange is classified: one vocabulary shared by the API client and the notifiers."""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from enum import StrEnum
from typing import Final, NamedTuple


class Reason(StrEnum):
    """Short machine-readable failure reasons; they also label metrics."""

    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    CLIENT_ERROR = "client_error"
    TIMEOUT = "timeout"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    CONNECTION = "connection"
    BAD_RESPONSE = "bad_response"
    CONFLICT = "conflict"
    INTERNAL_ERROR = "internal_error"  # a bug of ours while sending or recording one notification: dead-lettered


class StatusClass(NamedTuple):
    """What an HTTP status means for a caller: a reason and whether trying again may help."""

    reason: str
    retryable: bool


_BY_STATUS: Final = {
    401: StatusClass(Reason.AUTH, False),
    403: StatusClass(Reason.AUTH, False),
    404: StatusClass(Reason.NOT_FOUND, False),
    408: StatusClass(Reason.TIMEOUT, True),
    409: StatusClass(Reason.CONFLICT, True),
    429: StatusClass(Reason.RATE_LIMITED, True),
}


def classify_status(status: int) -> StatusClass:
    """Classify a non-2xx HTTP status: 408/409/429/5xx are retryable, other 4xx are not."""
    if status >= 500:
        return StatusClass(Reason.SERVER_ERROR, True)
    return _BY_STATUS.get(status, StatusClass(Reason.CLIENT_ERROR, False))


def parse_retry_after(headers: Mapping[str, str], now_ms: int) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, else `Retry-After` (seconds or HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_ms / 1000)

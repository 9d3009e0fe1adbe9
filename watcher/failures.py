"""How a failed HTTP exchange is classified: one vocabulary shared by the API client and the notifiers."""

from __future__ import annotations

from typing import Final, NamedTuple


class Reason:
    """Short machine-readable failure reasons; they also label metrics."""

    RATE_LIMITED: Final = "rate_limited"
    SERVER_ERROR: Final = "server_error"
    CLIENT_ERROR: Final = "client_error"
    TIMEOUT: Final = "timeout"
    AUTH: Final = "auth"
    NOT_FOUND: Final = "not_found"
    CONNECTION: Final = "connection"
    BAD_RESPONSE: Final = "bad_response"
    CONFLICT: Final = "conflict"


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

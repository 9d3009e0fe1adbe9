"""Typed errors of the Runloop API client. Messages are one readable line and never carry the API key."""

from __future__ import annotations

from watcher.core.failures import Reason


class RunloopApiError(Exception):
    """Any failure to get a usable answer from the Runloop API."""

    reason: str = Reason.CLIENT_ERROR
    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientApiError(RunloopApiError):
    """A failure that may go away: connection error, timeout, truncated body, 408, 409, 429 or 5xx."""

    retryable = True

    def __init__(
        self, message: str, *, reason: str, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.reason = reason
        self.retry_after_s = retry_after_s


class AuthError(RunloopApiError):
    """401/403: the API key is missing, invalid or lacks the benchmark read scope."""

    reason = Reason.AUTH


class NotFoundError(RunloopApiError):
    """404: no such job or run."""

    reason = Reason.NOT_FOUND


class ClientRequestError(RunloopApiError):
    """Another 4xx: the request itself was wrong; trying again will not help."""

    reason = Reason.CLIENT_ERROR


class MalformedResponseError(TransientApiError):
    """The body was not valid JSON (often a truncated or mangled response): retried, then raised."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, reason=Reason.BAD_RESPONSE, status=status)


class SchemaError(RunloopApiError):
    """The body was JSON but not the shape a watcher needs (e.g. a job without an id)."""

    reason = Reason.BAD_RESPONSE

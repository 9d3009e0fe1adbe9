"""HTTP plumbing shared by the notifiers that POST: one classified POST, safe locations, stable JSON."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec
from pydantic import SecretStr

from notifiers.protocol import PermanentSendError, RetryableSendError, error_for_status
from watcher.core.clock import Clock
from watcher.core.failures import Reason


def encode_json(value: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON: serialised once, so the bytes signed are the bytes sent (msgspec: the same bytes as
    `json.dumps(value, ensure_ascii=False, separators=(",", ":"))`, a tenth of the CPU)."""
    return msgspec.json.encode(value)


def rfc3339(at_ms: int) -> str:
    """A UTC timestamp like 2026-09-01T20:00:00.000Z."""
    return datetime.fromtimestamp(at_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def http_url(value: SecretStr) -> SecretStr:
    """A secret webhook URL must be http(s) with a host; the error never repeats it (it holds a token)."""
    parts = urllib.parse.urlsplit(value.get_secret_value())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// URL")
    return value


def location(url: str) -> str:
    """Host, port and path of a URL for messages: no credentials, no query string (either may hold a token)."""
    parts = urllib.parse.urlsplit(url)
    return parts.netloc.rpartition("@")[2] + parts.path


async def post_classified(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout_s: float,
    what: str,
    clock: Clock,
) -> None:
    """POST `body` and return on 2xx; anything else raises a classified `SendError`, never an aiohttp error."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        # No redirects: a redirected POST turns into a GET, and signed headers would follow it to another host.
        async with session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False) as response:
            if 200 <= response.status < 300:
                return
            raise error_for_status(response.status, what, headers=response.headers, now_ms=clock.now_ms())
    except TimeoutError:
        raise RetryableSendError(f"{what}: no answer within {timeout_s:g} s", reason=Reason.TIMEOUT) from None
    except aiohttp.ClientError as exc:
        # The exception's own text may repeat the URL with its query string: only its type is kept.
        message = f"{what}: connection failed ({type(exc).__name__})"
        raise RetryableSendError(message, reason=Reason.CONNECTION) from None
    except ValueError as exc:
        # aiohttp refuses e.g. a header value with a line break before sending anything: configuration, not luck.
        raise PermanentSendError(
            f"{what}: request not sent ({type(exc).__name__})", reason=Reason.CLIENT_ERROR
        ) from None

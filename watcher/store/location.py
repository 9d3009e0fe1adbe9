"""Where a store lives: a PostgreSQL URL or an SQLite file path, told apart by the URL scheme."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit, urlunsplit

POSTGRES_SCHEMES: Final = ("postgresql", "postgres")


def is_postgres_url(location: str) -> bool:
    """Whether `location` names a PostgreSQL database (`postgresql://…` or `postgres://…`)."""
    scheme, sep, _ = location.partition("://")
    return bool(sep) and scheme.lower() in POSTGRES_SCHEMES


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced by `***`: safe for logs, errors and reprs."""
    try:
        parts = urlsplit(url)
        if "password" in parts.query.lower():  # libpq also takes ?password=…
            parts = parts._replace(query="***")
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
        return urlunsplit(parts)
    except ValueError:  # unparseable: say nothing of it rather than risk a secret
        return "postgresql://***"

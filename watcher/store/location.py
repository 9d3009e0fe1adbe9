"""Where a store lives: a PostgreSQL URL or an SQLite file path, told apart by the URL scheme."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit, urlunsplit

POSTGRES_SCHEMES: Final = ("postgresql", "postgres")


def is_postgres_url(location: str) -> bool:
    """Whether `location` names a PostgreSQL database (`postgresql://…` or `postgres://…`)."""
    scheme, sep, _ = location.partition("://")
    return bool(sep) and scheme.lower() in POSTGRES_SCHEMES


def url_problem(url: str) -> str | None:
    """Why libpq would refuse `url`, in words that never quote it (its error quotes the bad part: often the
    password, as in `postgresql://u:pa%_ss@…`); None when it parses."""
    import psycopg.conninfo  # here: only a PostgreSQL URL pays for the driver

    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error as exc:
        text = str(exc)
        if "percent-encoded" in text:
            return "invalid percent-encoding (write a % in a password as %25)"
        if "IPv6" in text or "]" in text:
            return "an IPv6 host is written between two brackets: [::1]"
        return "not a valid connection URL"
    return None


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

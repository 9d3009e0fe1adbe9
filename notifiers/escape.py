"""Escaping for where text lands. Every string that came from the API passes through one of these."""

from __future__ import annotations

import html
import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_HEADER_BREAKS = re.compile(r"[\r\n\x00-\x1f\x7f\u2028\u2029\x85]+")


def slack_mrkdwn(text: str) -> str:
    """Escape `&`, `<`, `>` as Slack asks, so `<!channel>` or `<https://x|y>` in a job name is shown, not acted on."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_link(url: str, label: str) -> str:
    """A Slack mrkdwn link; `|` and `>` in the URL would end it early, so they are percent-encoded."""
    safe_url = url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C").replace(" ", "%20")
    return f"<{safe_url}|{slack_mrkdwn(label)}>"


def html_text(text: str) -> str:
    """Text for HTML element content or attribute values."""
    return html.escape(_CONTROL.sub(" ", text), quote=True)


def header_value(text: str, *, max_chars: int = 900) -> str:
    """One email header line: CR, LF and other breaks collapse to a space, so nothing can inject a header."""
    flat = _HEADER_BREAKS.sub(" ", text).strip()
    return flat if len(flat) <= max_chars else flat[: max_chars - 1] + "…"


def plain_text(text: str) -> str:
    """Text without control characters (newlines and tabs kept), for consoles and plain-text bodies."""
    return _CONTROL.sub(" ", text)

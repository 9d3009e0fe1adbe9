"""Escaping for where text lands. Every string that came from the API passes through one of these."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

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


_DISCORD_MARKDOWN = re.compile(r"([\\*_~`|\[\]()<@])")
_LINE_START_MARKUP = re.compile(r"^(\s*)([-+#>]|\d+\.)", re.MULTILINE)
_CARD_MARKDOWN = re.compile(r"([\\*_\[\]()#`>~])")
_CARD_LIST_START = re.compile(r"^(\s*)([-+]|\d+\.)(\s)", re.MULTILINE)


def discord_markdown(text: str) -> str:
    """Discord markdown with every markup character backslash-escaped: no bold, links, headings, quotes, spoilers,
    mentions (`<@id>`, `@everyone`) or emoji codes come from an API string; control characters become spaces."""
    escaped = _DISCORD_MARKDOWN.sub(r"\\\1", plain_text(text))
    return _LINE_START_MARKUP.sub(lambda match: f"{match.group(1)}\\{match.group(2)}", escaped)


def adaptive_card_text(text: str) -> str:
    """Text for an Adaptive Card TextBlock or fact: its markdown subset escaped (emphasis, links, list starts) and
    `{{` broken up, so `{{DATE(...)}}` functions are shown, not evaluated."""
    escaped = _CARD_MARKDOWN.sub(r"\\\1", plain_text(text))
    escaped = _CARD_LIST_START.sub(lambda match: f"{match.group(1)}\\{match.group(2)}{match.group(3)}", escaped)
    return escaped.replace("{{", "{\u200b{")


def fitted(text: str, max_chars: int, escape: Callable[[str], str]) -> str:
    """`text` escaped and cut to `max_chars` (ending in …), never inside an escape sequence."""
    escaped = escape(text)
    if len(escaped) <= max_chars:
        return escaped
    pieces: list[str] = []
    size = 0
    for char in text:
        piece = escape(char)
        if size + len(piece) > max_chars - 1:
            break
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces) + "…"

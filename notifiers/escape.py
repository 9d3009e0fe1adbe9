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
    """`text` escaped and cut to `max_chars` (ending in …), never inside an escape sequence.

    The longest prefix of `text` whose escaping fits is escaped whole — not character by character, which would
    miss what depends on context (a `-` starting a line, `{{`)."""
    escaped = escape(text)
    if len(escaped) <= max_chars:
        return escaped
    fits, too_long = 0, len(text)  # escaping never shortens, so the fitting prefixes are those up to some length
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if len(escape(text[:middle])) <= max_chars - 1:
            fits = middle
        else:
            too_long = middle
    return escape(text[:fits]) + "…"


def fitted_lines(text: str, max_chars: int, escape: Callable[[str], str], *, separator: str = "\n") -> str:
    """`text` escaped line by line within `max_chars`: whole lines while they fit, then `… and N more lines`, so a
    reader knows what is missing. A first line longer than everything is cut (ending in …); blank lines go."""
    lines = [line for line in text.splitlines() if line.strip()]
    kept: list[str] = []
    for index, line in enumerate(lines):
        rest = len(lines) - index - 1
        tail = f"{separator}… and {rest} more lines" if rest else ""
        used = len(separator.join(kept)) + (len(separator) if kept else 0)
        escaped = escape(line)
        if used + len(escaped) + len(tail) <= max_chars:
            kept.append(escaped)
        elif not kept:
            kept.append(fitted(line, max(max_chars - len(tail), 1), escape))
        else:
            return separator.join([*kept, f"… and {rest + 1} more lines"])
    return separator.join(kept)

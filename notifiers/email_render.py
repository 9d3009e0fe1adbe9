"""One notification as an email: a plain-text part and an HTML part with the same content (pure functions)."""

from __future__ import annotations

import email.utils
import urllib.parse
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Final

from notifiers.compared import MAX_LISTED, agent_headline, compared_events, more_than_listed, scenario_lists
from notifiers.escape import header_value, html_text, plain_text
from watcher.core.comparison import ScenarioRef
from watcher.core.events import JobCompared
from watcher.core.notification import Notification
from watcher.core.summary import AgentSummary, FailureExample, FailureGroup, JobSummary

AGENT_COLUMNS: Final = ("agent", "model", "status", "score", "completed", "failed", "timeout", "duration")
MAX_CELL_CHARS: Final = 60
MAX_MESSAGE_CHARS: Final = 300

_CELL_STYLE: Final = "border:1px solid #ddd;padding:4px 8px;text-align:left"
_HEAD_STYLE: Final = _CELL_STYLE + ";background:#f4f4f4"


def render_message(
    notification: Notification, *, sender: str, to: tuple[str, ...], subject_prefix: str, now_ms: int
) -> EmailMessage:
    """The whole message: headers (Message-ID stable across retries) and a multipart/alternative body."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject_for(subject_prefix, notification.title)
    message["Date"] = email.utils.format_datetime(datetime.fromtimestamp(now_ms / 1000, tz=UTC))
    # The id is the idempotency key of every send: a retry after a lost reply carries the same Message-ID,
    # so mail clients and archives can fold the duplicate.
    message["Message-ID"] = header_value(f"<{notification.id}@benchwatch>")
    message["X-Benchwatch-Notification"] = header_value(notification.id)
    message["X-Benchwatch-Rule"] = header_value(notification.rule)
    message["X-Benchwatch-Severity"] = notification.severity
    # RFC 3834: tells vacation responders not to answer a robot.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(render_text(notification))
    message.add_alternative(render_html(notification), subtype="html")
    return message


def subject_for(prefix: str, title: str) -> str:
    """The Subject line: one header line whatever the title holds."""
    return header_value(f"{prefix} {title}")


def render_text(notification: Notification) -> str:
    """The text/plain part: title, text, the per-agent table aligned, failures by type, links."""
    sections = [plain_text(notification.title), plain_text(notification.text).strip()]
    sections.extend(_comparison_text(event) for event in compared_events(notification))
    summary = notification.summary
    if summary is not None:
        if summary.agents:
            sections.append("Agents\n" + _aligned([AGENT_COLUMNS, *map(agent_cells, summary.agents)]))
        if summary.failures:
            heading = f"Failures by type: {summary.failures_by_class.text()}"
            sections.append(heading + "\n" + "\n".join(map(_failure_group_text, summary.failures)))
        sections.append("Links\n" + "\n".join(f"{label}: {plain_text(url)}" for label, url in links(summary)))
    return "\n\n".join(section for section in sections if section) + "\n"


def render_html(notification: Notification) -> str:
    """The text/html part: the same content, every API string escaped, a simple inline-styled table."""
    parts = [
        f'<h2 style="margin:0 0 12px">{html_text(notification.title)}</h2>',
        f'<div style="white-space:pre-wrap">{html_text(notification.text.strip())}</div>',
    ]
    parts.extend(_comparison_html(event) for event in compared_events(notification))
    summary = notification.summary
    if summary is not None:
        parts.extend(_summary_html(summary))
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n'
        f'<body style="font-family:sans-serif;font-size:14px;color:#222">\n{body}\n</body></html>\n'
    )


def agent_cells(agent: AgentSummary) -> tuple[str, ...]:
    """One row of the per-agent table, as unescaped one-line cells in `AGENT_COLUMNS` order."""
    score = "-" if agent.score is None else f"{agent.score:.3f}"
    return (
        _cell(agent.agent_name or agent.benchmark_run_id),
        _cell(agent.model_name or "-"),
        "finished" if agent.finished else "running",
        score,
        str(agent.n_completed),
        str(agent.n_failed),
        str(agent.n_timeout),
        _duration(agent.duration_ms),
    )


def links(summary: JobSummary) -> list[tuple[str, str]]:
    """(label, url) of the dashboard and of each agent's run."""
    agent_links = [(f"{_cell(a.agent_name or a.benchmark_run_id)} run", a.url) for a in summary.agents]
    return [("Dashboard", summary.dashboard_url), *agent_links]


def _summary_html(summary: JobSummary) -> list[str]:
    parts: list[str] = []
    if summary.agents:
        parts.append('<h3 style="margin:16px 0 8px">Agents</h3>')
        parts.append(_agents_table(summary.agents))
    if summary.failures:
        by_class = html_text(summary.failures_by_class.text())
        parts.append(f'<h3 style="margin:16px 0 8px">Failures by type: {by_class}</h3>')
        parts.extend(_failure_group_html(group) for group in summary.failures)
    parts.append(f"<p>{_link_html(summary.dashboard_url, 'Open the dashboard')}</p>")
    return parts


def _agents_table(agents: tuple[AgentSummary, ...]) -> str:
    head = "".join(f'<th style="{_HEAD_STYLE}">{column}</th>' for column in AGENT_COLUMNS)
    rows = []
    for agent in agents:
        first, *rest = agent_cells(agent)
        cells = [_link_html(agent.url, first), *map(html_text, rest)]
        rows.append("<tr>" + "".join(f'<td style="{_CELL_STYLE}">{cell}</td>' for cell in cells) + "</tr>")
    return f'<table style="border-collapse:collapse">\n<tr>{head}</tr>\n' + "\n".join(rows) + "\n</table>"


def _failure_group_text(group: FailureGroup) -> str:
    lines = [f"{_cell(group.exception_type)} ({group.count}, {group.failure_class})"]
    for example in group.examples:
        lines.append(f"  - {_example_line(example)}")
        if example.url:
            lines.append(f"    {plain_text(example.url)}")
    if group.count > len(group.examples):
        lines.append(f"  … and {group.count - len(group.examples)} more")
    return "\n".join(lines)


def _failure_group_html(group: FailureGroup) -> str:
    items = [f"<li>{_example_html(example)}</li>" for example in group.examples]
    if group.count > len(group.examples):
        items.append(f"<li>… and {group.count - len(group.examples)} more</li>")
    title = f'<h4 style="margin:12px 0 4px">{html_text(_cell(group.exception_type))} ({group.count})</h4>'
    return title + "\n<ul>" + "".join(items) + "</ul>"


def _example_html(example: FailureExample) -> str:
    name = _cell(example.scenario_name)
    linked = _link_html(example.url, name) if example.url else html_text(name)
    agent = f" ({html_text(_cell(example.agent_name))})" if example.agent_name else ""
    message = f": <code>{html_text(_one_line(example.message, MAX_MESSAGE_CHARS))}</code>" if example.message else ""
    return f"{linked}{agent}{message}"


def _example_line(example: FailureExample) -> str:
    agent = f" ({_cell(example.agent_name)})" if example.agent_name else ""
    message = f": {_one_line(example.message, MAX_MESSAGE_CHARS)}" if example.message else ""
    return f"{_cell(example.scenario_name)}{agent}{message}"


def _comparison_text(event: JobCompared) -> str:
    lines = [f"vs baseline {_cell(event.baseline_job_name)}"]
    for agent in event.agents:
        lines.append(f"  {_one_line(agent_headline(agent), 400)}")
        for label, refs in scenario_lists(agent):
            lines.append(f"    {label} ({len(refs)}):")
            for ref in refs[:MAX_LISTED]:
                lines.append(f"      - {_cell(ref.scenario_name)}" + (f"  {plain_text(ref.url)}" if ref.url else ""))
            if more_than_listed(refs):
                lines.append(f"      … and {more_than_listed(refs)} more")
    return "\n".join(lines)


def _comparison_html(event: JobCompared) -> str:
    parts = [f'<h3 style="margin:16px 0 8px">vs baseline {html_text(_cell(event.baseline_job_name))}</h3>']
    for agent in event.agents:
        parts.append(f"<p><b>{html_text(_one_line(agent_headline(agent), 400))}</b></p>")
        for label, refs in scenario_lists(agent):
            items = [f"<li>{_ref_html(ref)}</li>" for ref in refs[:MAX_LISTED]]
            if more_than_listed(refs):
                items.append(f"<li>… and {more_than_listed(refs)} more</li>")
            parts.append(f"<p>{html_text(label)} ({len(refs)}):</p><ul>{''.join(items)}</ul>")
    return "\n".join(parts)


def _ref_html(ref: ScenarioRef) -> str:
    name = _cell(ref.scenario_name)
    return _link_html(ref.url, name) if ref.url else html_text(name)


def _link_html(url: str, label: str) -> str:
    """An <a href>, or the bare label when the URL is not http(s): no `javascript:` link can slip in."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        return html_text(label)
    return f'<a href="{html_text(url)}">{html_text(label)}</a>'


def _aligned(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _cell(text: str) -> str:
    return _one_line(text, MAX_CELL_CHARS)


def _one_line(text: str, max_chars: int) -> str:
    """API text on one line (breaks and tabs would wreck the alignment), cut to `max_chars`."""
    flat = " ".join(plain_text(text).split())
    return flat if len(flat) <= max_chars else flat[: max_chars - 1] + "…"


def _duration(duration_ms: int | None) -> str:
    if duration_ms is None:
        return "-"
    seconds = duration_ms // 1000
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60}m {seconds % 60:02d}s"

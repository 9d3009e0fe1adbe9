"""Slack Block Kit messages for a notification and for a job's thread root: pure functions, within Slack's limits.

Every string that came from the API is escaped with `slack_mrkdwn` (or linked with `slack_link`) and fitted to its
limit AFTER escaping, so an entity is never cut in half and no job name can ping a channel.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from notifiers.compared import MAX_LISTED, agent_headline, compared_events, more_than_listed, scenario_lists
from notifiers.escape import fitted, slack_link, slack_mrkdwn
from watcher.core.notification import Notification
from watcher.core.summary import AgentSummary, FailureGroup, JobSummary

Block = dict[str, Any]

MAX_BLOCKS: Final = 50
HEADER_MAX_CHARS: Final = 150
SECTION_MAX_CHARS: Final = 3000
FALLBACK_MAX_CHARS: Final = 3000
MAX_EXAMPLES: Final = 3
# Sections per list: the whole message stays far below MAX_BLOCKS, and a thread stays readable.
MAX_TEXT_SECTIONS: Final = 2
MAX_AGENT_SECTIONS: Final = 3
MAX_FAILURE_SECTIONS: Final = 3
# Room kept in every section of a list for its "… and N more" line, so the line fits wherever the list stops.
_TAIL_RESERVE: Final = 40
# A link longer than this (after escaping) is shown as its label alone, so one odd URL cannot fill a section.
_MAX_LINK_CHARS: Final = 500
_SPACES = re.compile(r"\s+")

_SEVERITY_MARKS: Final = {"info": "🔵", "warning": "🟠", "critical": "🔴"}
_STATE_MARKS: Final = {"completed": "✅", "failed": "❌", "cancelled": "⛔", "timeout": "⌛"}


def message_blocks(notification: Notification) -> list[Block]:
    """The notification as Block Kit: header, status line, its text, the agents table, failures, links."""
    blocks = [_header(_title(notification)), _context(_status_line(notification))]
    blocks += _text_sections(notification.text)
    blocks += _comparison_sections(notification)
    summary = notification.summary
    if summary is not None:
        blocks += _agent_sections(summary.agents)
        blocks += _failure_sections(summary.failures, summary.failures_by_class.text())
        blocks.append(_context(_links_line(summary, notification.rule)))
    return blocks[:MAX_BLOCKS]


def message_text(notification: Notification) -> str:
    """The plain fallback (notifications, screen readers): title and text, escaped."""
    prefix = "Resolved: " if notification.action == "resolve" else ""
    return escaped_within(f"{prefix}{notification.title}\n{notification.text}", FALLBACK_MAX_CHARS)


def root_blocks(notification: Notification) -> list[Block]:
    """A job's thread root: its name, latest state and progress, and the agents' scores."""
    summary = notification.summary
    blocks = [_header(_job_name(notification))]
    if summary is None:
        return [*blocks, _context("state unknown")]
    blocks.append(_context(f"{_progress_line(summary)} · updated {_date(notification.created_ms)}"))
    blocks += _agent_sections(summary.agents)
    blocks.append(_context(_links_line(summary, rule=None)))
    return blocks


def root_text(notification: Notification) -> str:
    """The root's plain fallback: the job's name, state and progress."""
    summary = notification.summary
    state = "state unknown" if summary is None else f"{summary.state}, {_done(summary)} done"
    return escaped_within(f"{_job_name(notification)}: {state}", FALLBACK_MAX_CHARS)


def escaped_within(text: str, max_chars: int) -> str:
    """`text` escaped for mrkdwn and cut to `max_chars` (ending in …), never inside an entity."""
    return fitted(text, max_chars, slack_mrkdwn)


def duration_text(duration_ms: int | None) -> str:
    """A human duration: `42s`, `23m 05s`, `2h 03m 05s`; `n/a` when unknown."""
    if duration_ms is None:
        return "n/a"
    total_s = round(duration_ms / 1000)
    hours, rest = divmod(total_s, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


def _one_line(text: str, max_chars: int) -> str:
    """API text for one line of mrkdwn: whitespace collapsed (a newline could start a quote), escaped, fitted."""
    return escaped_within(_SPACES.sub(" ", text).strip(), max_chars)


def _clip(text: str, max_chars: int) -> str:
    """Raw API text on one line, cut to `max_chars` (escaping may grow it at most fivefold)."""
    flat = _SPACES.sub(" ", text).strip()
    return flat if len(flat) <= max_chars else flat[: max_chars - 1] + "…"


def _linked(url: str | None, label: str, max_label_chars: int) -> str:
    """`label` linked to `url`, or the escaped label alone when there is no URL or it is absurdly long."""
    clipped = _clip(label, max_label_chars)
    link = slack_link(url, clipped) if url is not None else ""
    return link if link and len(link) <= _MAX_LINK_CHARS else slack_mrkdwn(clipped)


def _header(text: str) -> Block:
    # Slack refuses an empty header: a job without a name, a title template that rendered nothing
    shown = escaped_within(text, HEADER_MAX_CHARS) if text.strip() else "benchwatch"
    return {"type": "header", "text": {"type": "plain_text", "text": shown}}


def _context(mrkdwn: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn}]}


def _section(mrkdwn: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def _title(notification: Notification) -> str:
    """The header's raw text (escaped by `_header`)."""
    title = _SPACES.sub(" ", notification.title).strip()
    if notification.action == "resolve":
        return f"✅ Resolved: {title}"
    return f"{_SEVERITY_MARKS[notification.severity]} {title}"


def _job_name(notification: Notification) -> str:
    if notification.summary is not None:
        return notification.summary.job_name
    return notification.events[0].job_name if notification.events else "benchwatch"


def _status_line(notification: Notification) -> str:
    """Severity (or resolved), then the job's state and progress when known."""
    severity = "✅ *resolved*" if notification.action == "resolve" else f"*{notification.severity}*"
    summary = notification.summary
    if summary is None:
        return f"{severity} · rule {_one_line(notification.rule, 200)}"
    return f"{severity} · {_progress_line(summary)}"


def _progress_line(summary: JobSummary) -> str:
    state = f"{_STATE_MARKS.get(summary.state, '⏳')} *{_one_line(summary.state, 60)}*"
    parts = [state, f"{_done(summary)} done", f"{summary.n_failed} failed", f"{summary.n_timeout} timed out"]
    if summary.n_canceled:
        parts.append(f"{summary.n_canceled} canceled")
    if summary.failure_rate is not None:
        parts.append(f"{summary.failure_rate:.1%} failure rate")
    return " · ".join(parts)


def _done(summary: JobSummary) -> str:
    expected = "?" if summary.n_expected is None else str(summary.n_expected)
    return f"{summary.n_done}/{expected}"


def _date(at_ms: int) -> str:
    """A Slack date token: shown in the reader's time zone, with a UTC fallback."""
    seconds = at_ms // 1000
    fallback = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{seconds}^{{date_short_pretty}} {{time}}|{fallback}>"


def _links_line(summary: JobSummary, rule: str | None) -> str:
    parts = [slack_link(summary.dashboard_url, "Runloop dashboard"), f"job {_one_line(summary.job_id, 200)}"]
    if rule is not None:
        parts.append(f"rule {_one_line(rule, 200)}")
    return " · ".join(parts)


def _text_sections(text: str) -> list[Block]:
    lines = [escaped_within(line, 1000) for line in text.splitlines() if line.strip()]
    return packed_sections("", lines, noun="lines", max_sections=MAX_TEXT_SECTIONS)


def _agent_sections(agents: Sequence[AgentSummary]) -> list[Block]:
    if not agents:
        return []
    lines = [_agent_line(agent) for agent in agents]
    return packed_sections(f"*Agents* ({len(agents)})", lines, noun="agents", max_sections=MAX_AGENT_SECTIONS)


def _agent_line(agent: AgentSummary) -> str:
    """`• *agent* · model · score *0.812* · 40 completed / 2 failed / 1 timed out · 23m 05s`."""
    name = _linked(agent.url, agent.agent_name or agent.benchmark_run_id, 60)
    running = " _(running)_" if not agent.finished else ""
    model = _one_line(agent.model_name, 200) if agent.model_name else "model n/a"
    score = "n/a" if agent.score is None else f"{agent.score:.3f}"
    counts = f"{agent.n_completed} completed / {agent.n_failed} failed / {agent.n_timeout} timed out"
    return f"• *{name}*{running} · {model} · score *{score}* · {counts} · {duration_text(agent.duration_ms)}"


def _failure_sections(failures: Sequence[FailureGroup], by_class: str) -> list[Block]:
    if not failures:
        return []
    lines = [_failure_line(group) for group in failures]
    title = f"*Failures* by exception type ({len(failures)})" + (f": {by_class}" if by_class else "")
    return packed_sections(title, lines, noun="exception types", max_sections=MAX_FAILURE_SECTIONS)


def _failure_line(group: FailureGroup) -> str:
    """`• *TimeoutError* × 12 — first message` and, below, up to three example scenarios."""
    line = f"• *{_one_line(group.exception_type, 300)}* × {group.count} ({group.failure_class})"
    message = next((example.message for example in group.examples if example.message.strip()), "")
    if message:
        line += f" — {_one_line(message, 600)}"
    shown = group.examples[:MAX_EXAMPLES]
    if not shown:
        return line
    examples = ", ".join(_linked(example.url, example.scenario_name, 60) for example in shown)
    more = group.count - len(shown)
    return f"{line}\n      e.g. {examples}" + (f" and {more} more" if more > 0 else "")


def _comparison_sections(notification: Notification) -> list[Block]:
    """The "vs baseline" section of each `job.compared` event: per agent the change, then its scenarios, linked."""
    blocks: list[Block] = []
    for event in compared_events(notification)[:2]:
        title = f"*vs baseline* {_linked(None, event.baseline_job_name, 150)}"
        lines = []
        for agent in event.agents:
            lines.append(f"• {_one_line(agent_headline(agent), 600)}")
            for label, refs in scenario_lists(agent):
                names = ", ".join(_linked(ref.url, ref.scenario_name, 60) for ref in refs[:MAX_LISTED])
                more = more_than_listed(refs)
                lines.append(f"      {label} ({len(refs)}): {names}" + (f" and {more} more" if more else ""))
        blocks += packed_sections(title, lines, noun="lines", max_sections=MAX_AGENT_SECTIONS)
    return blocks


def packed_sections(title: str, lines: Sequence[str], *, noun: str, max_sections: int) -> list[Block]:
    """Lines packed into at most `max_sections` sections of ≤3000 chars; the rest become `… and N more <noun>`."""
    chunks: list[list[str]] = [[title] if title else []]
    room = SECTION_MAX_CHARS - _TAIL_RESERVE
    for index, line in enumerate(lines):
        if _size([*chunks[-1], line]) <= room:
            chunks[-1].append(line)
        elif len(chunks) < max_sections and len(line) <= room:
            chunks.append([line])
        else:
            chunks[-1].append(f"… and {len(lines) - index} more {noun}")
            break
    return [_section("\n".join(chunk)) for chunk in chunks if chunk]


def _size(lines: Sequence[str]) -> int:
    return sum(len(line) for line in lines) + max(len(lines) - 1, 0)

"""Titles, texts and dedup keys: Jinja2 templates in a sandbox, compiled at load, with defaults per event kind.

Rendered text is plain: each notifier escapes it for where it goes (Slack mrkdwn, HTML, email headers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from watcher.core.eventlines import event_line
from watcher.core.events import Event
from watcher.core.summary import JobSummary

MAX_TEXT_LINES: Final = 40
MAX_TEMPLATE_CHARS: Final = 20_000
_ENVIRONMENT = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False
)

_KIND_PHRASES: Final = {
    "job.discovered": "watching",
    "job.state_changed": "state changes",
    "job.finished": "finished",
    "run.started": "runs started",
    "run.finished": "runs finished",
    "scenario.failed": "scenarios failed",
    "scenario.timed_out": "scenarios timed out",
    "scenario.canceled": "scenarios canceled",
    "scenario.recovered": "scenarios recovered",
    "score.changed": "score changes",
    "job.compared": "comparisons with a baseline",
    "job.infra_degraded": "setup failures over the limit",
    "job.progress": "progress updates",
    "job.stalled": "stalls",
    "job.vanished": "vanished",
    "watcher.api_unreachable": "API outages",
    "watcher.api_recovered": "API recoveries",
}


class TemplateError(Exception):
    """A template failed to render for one notification (the default is used instead)."""


@dataclass(frozen=True)
class Template:
    """A compiled template and its source."""

    source: str
    _template: jinja2.Template

    def render(self, context: Mapping[str, Any]) -> str:
        """Render; raises TemplateError on an undefined name or a sandbox violation."""
        try:
            return self._template.render(context).strip()
        except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, RecursionError) as exc:
            raise TemplateError(f"template {self.source!r}: {exc}") from None


def compile_template(source: str) -> Template:
    """Compile a template; raises ValueError with the syntax error and its line within the template, or when it
    is too long or nests too deeply to compile (Jinja compiles to Python, whose parser has its own limits)."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise ValueError(f"template is {len(source)} characters long; at most {MAX_TEMPLATE_CHARS} are allowed")
    try:
        return Template(source, _ENVIRONMENT.from_string(source))
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"invalid template (line {exc.lineno}): {exc.message}") from None
    except (SyntaxError, RecursionError, MemoryError):  # IndentationError: 100 nested blocks and more
        raise ValueError("template nests too deeply to compile; flatten its blocks") from None


def template_context(
    *, rule: str, severity: str, events: Sequence[Event], summary: JobSummary | None
) -> dict[str, Any]:
    """What templates can use: `event` (the first), `events`, `count`, `summary`, `rule`, `severity`, `job_*`."""
    dumped = [event.model_dump(mode="json") for event in events]
    first = dumped[0] if dumped else {}
    return {
        "rule": rule,
        "severity": severity,
        "event": first,
        "events": dumped,
        "count": len(dumped),
        "summary": summary.model_dump(mode="json") if summary is not None else {},
        "job_id": first.get("job_id"),
        "job_name": first.get("job_name"),
    }


LATE_NOTE = " (told late: it happened before benchwatch first saw the job)"


def default_title(events: Sequence[Event], summary: JobSummary | None) -> str:
    """A one-line title fitting the events: the single event's line, or a count of what happened."""
    if not events:
        return "benchwatch"
    job_name = events[0].job_name
    late = LATE_NOTE if all(event.late for event in events) else ""
    if len(events) == 1:
        return _with_scores(event_line(events[0]), events[0], summary) + late
    kinds = {event.kind for event in events}
    if len(kinds) == 1:
        return f"{job_name}: {len(events)} {_KIND_PHRASES.get(events[0].kind, events[0].kind)}{late}"
    return f"{job_name}: {len(events)} events{late}"


def _with_scores(line: str, event: Event, summary: JobSummary | None) -> str:
    if event.kind != "job.finished" or summary is None or not summary.scores:
        return line
    scores = ", ".join(f"{agent} {score:.3f}" for agent, score in sorted(summary.scores.items()))
    return f"{line} — {scores}"


def default_text(events: Sequence[Event]) -> str:
    """One line per event, at most MAX_TEXT_LINES, then how many more."""
    lines = [event_line(event) for event in events[:MAX_TEXT_LINES]]
    if len(events) > MAX_TEXT_LINES:
        lines.append(f"… and {len(events) - MAX_TEXT_LINES} more")
    return "\n".join(lines)

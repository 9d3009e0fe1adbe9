"""Webhook bodies from a Jinja2 template (`format: template`): compiled at load, rendered in a sandbox.

The template sees what titles see — `rule`, `severity`, `event` (the first), `events`, `count`, `summary`,
`job_id`, `job_name` — and `notification`, the whole notification as the `json` format sends it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from notifiers.protocol import PermanentSendError
from watcher.core.failures import Reason

_ENVIRONMENT = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


def compile_body(source: str) -> jinja2.Template:
    """Compile a body template; raises ValueError with the syntax error and its line within the template."""
    try:
        return _ENVIRONMENT.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"invalid template (line {exc.lineno}): {exc.message}") from None


def body_context(notification: Mapping[str, Any]) -> dict[str, Any]:
    """The template's names, from the notification as plain JSON."""
    events = notification["events"]
    first = events[0] if events else {}
    return {
        "rule": notification["rule"],
        "severity": notification["severity"],
        "event": first,
        "events": events,
        "count": len(events),
        "summary": notification["summary"] or {},
        "job_id": first.get("job_id"),
        "job_name": first.get("job_name"),
        "notification": notification,
    }


def is_json(content_type: str) -> bool:
    """`application/json` and every `+json` type (`application/cloudevents+json`, ...)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def render_body(template: jinja2.Template, notification: Mapping[str, Any], content_type: str, what: str) -> bytes:
    """The rendered body; a template that fails, or JSON that does not parse, is a permanent error saying why."""
    try:
        text = template.render(body_context(notification))
    except (jinja2.TemplateError, TypeError, ValueError) as exc:
        raise PermanentSendError(f"{what}: body template failed: {exc}", reason=Reason.CLIENT_ERROR) from None
    if is_json(content_type):
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            message = f"{what}: rendered body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            raise PermanentSendError(message, reason=Reason.CLIENT_ERROR) from None
    return text.encode()

"""Logging: text and JSON lines, extras, secrets redacted wherever they appear, secrets found in a config."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from pydantic import BaseModel, Field, SecretStr

from watcher.app.logs import configure_logging, secrets_of
from watcher.app.service import _log_scheduler_event

TOKEN = "xoxb-123-secret-token"
PASSWORD = 'pa"ss\\word'  # JSON escapes both characters: redaction must still find it
LIBRARY_LOGGERS = ("aiohttp.access", "slack_sdk", "apscheduler.executors.default", "apscheduler.scheduler")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put the root logger and the quietened libraries back as they were, for the tests that follow."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    library_levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, library_level in library_levels.items():
        logging.getLogger(name).setLevel(library_level)


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _raise_with(message: str) -> None:
    raise RuntimeError(message)


def test_text_lines_carry_time_level_logger_and_message() -> None:
    stream = io.StringIO()
    configure_logging(fmt="text", level=logging.INFO, secrets=[], stream=stream)

    logging.getLogger("benchwatch.delivery").info("delivered %s to %s", "ntf_1", "slack")
    logging.getLogger("benchwatch.delivery").debug("not at INFO")

    line = stream.getvalue()
    pattern = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO benchwatch\.delivery: delivered ntf_1 to slack\n"
    assert re.fullmatch(pattern, line)


def test_json_lines_carry_the_core_fields_and_extras() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", level=logging.DEBUG, secrets=[], stream=stream)
    log = logging.getLogger("benchwatch.poll")

    log.debug("polled %s", "bmj_1", extra={"job_id": "bmj_1", "duration_ms": 12, "tags": ["a", "b"], "obj": object()})
    log.warning("second line", extra={"level": "not me"})

    first, second = _json_lines(stream)
    assert list(first)[:4] == ["time", "level", "logger", "message"]
    assert first["time"].endswith("Z")
    parsed = datetime.fromisoformat(first["time"])
    assert parsed.tzinfo is not None and parsed.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 60
    assert (first["level"], first["logger"], first["message"]) == ("DEBUG", "benchwatch.poll", "polled bmj_1")
    assert (first["job_id"], first["duration_ms"], first["tags"]) == ("bmj_1", 12, ["a", "b"])
    assert "obj" not in first  # not JSON: left out rather than breaking the line
    assert "exception" not in first
    assert second["level"] == "WARNING"  # an extra cannot override a core field


def test_json_exceptions_are_one_string_field() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", level=logging.INFO, secrets=[], stream=stream)

    try:
        _raise_with("boom")
    except RuntimeError:
        logging.getLogger("benchwatch").exception("send failed")

    (entry,) = _json_lines(stream)
    assert entry["message"] == "send failed"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("RuntimeError: boom")


def test_configuring_again_replaces_the_previous_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    before = len(root.handlers)
    configure_logging(fmt="text", level=logging.INFO, secrets=[], stream=first)
    configure_logging(fmt="json", level=logging.INFO, secrets=[], stream=second)

    logging.getLogger("benchwatch").info("once")

    assert len(root.handlers) == before + 1
    assert first.getvalue() == ""
    assert _json_lines(second)[0]["message"] == "once"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_are_redacted_from_message_args_extras_and_exceptions(fmt: Literal["text", "json"]) -> None:
    stream = io.StringIO()
    configure_logging(fmt=fmt, level=logging.INFO, secrets=[TOKEN, PASSWORD, "", "abc"], stream=stream)
    log = logging.getLogger("benchwatch.slack")

    log.info(f"token {TOKEN} in the message")
    log.info("password %s in the args, abc kept (too short to redact)", PASSWORD)
    log.info("in the extras", extra={"url": f"https://hooks/{TOKEN}", "auth": {"password": PASSWORD}})
    try:
        _raise_with(f"rejected {TOKEN}")
    except RuntimeError:
        log.exception("send failed")

    output = stream.getvalue()
    assert TOKEN not in output
    assert "secret-token" not in output
    assert "ss\\word" not in output and "ss\\\\word" not in output
    assert output.count("***") == (5 if fmt == "json" else 3)  # text lines leave extras out
    assert "abc kept" in output
    if fmt == "json":
        lines = _json_lines(stream)
        assert lines[0]["message"] == "token *** in the message"
        assert lines[1]["message"].startswith("password *** in the args")
        assert (lines[2]["url"], lines[2]["auth"]) == ("https://hooks/***", {"password": "***"})
        assert lines[3]["exception"].endswith("RuntimeError: rejected ***")


def test_noisy_libraries_are_quiet_unless_debugging() -> None:
    configure_logging(fmt="text", level=logging.INFO, secrets=[], stream=io.StringIO())
    assert all(logging.getLogger(name).level == logging.WARNING for name in LIBRARY_LOGGERS)

    configure_logging(fmt="text", level=logging.DEBUG, secrets=[], stream=io.StringIO())
    assert logging.getLogger("apscheduler.executors.default").getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("aiohttp.access").level == logging.WARNING
    assert logging.getLogger("slack_sdk").level == logging.WARNING


class _Smtp(BaseModel):
    host: str
    password: SecretStr | None = None


class _Notifier(BaseModel):
    name: str
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    smtp: _Smtp | None = None


class _Config(BaseModel):
    api_key: SecretStr
    notifiers: list[_Notifier]
    by_name: dict[str, _Notifier] = Field(default_factory=dict)
    fallbacks: tuple[SecretStr, ...] = ()
    plain: str = "not-a-secret"


def test_secrets_of_walks_models_dicts_lists_and_tuples() -> None:
    hooks = _Notifier(name="hooks", headers={"Authorization": SecretStr("Bearer hdr-1"), "X-Empty": SecretStr("")})
    mail = _Notifier(name="mail", smtp=_Smtp(host="smtp.example", password=SecretStr("smtp-pw")))
    config = _Config(
        api_key=SecretStr("ak_live_1"),
        notifiers=[hooks, mail],
        by_name={"mail": mail, "other": _Notifier(name="o", smtp=_Smtp(host="h", password=SecretStr("dict-pw")))},
        fallbacks=(SecretStr("fb-1"), SecretStr("ak_live_1")),
    )

    assert secrets_of(config) == ["ak_live_1", "Bearer hdr-1", "smtp-pw", "dict-pw", "fb-1"]
    assert secrets_of({"nested": [config.notifiers[1]]}) == ["smtp-pw"]
    assert secrets_of("plain") == []


def test_secrets_of_feeds_the_redaction() -> None:
    stream = io.StringIO()
    config = _Config(api_key=SecretStr("ak_live_1"), notifiers=[])
    configure_logging(fmt="text", level=logging.INFO, secrets=secrets_of(config), stream=stream)

    logging.getLogger("benchwatch.client").info("using %s", config.api_key.get_secret_value())

    assert stream.getvalue().endswith("benchwatch.client: using ***\n")


async def test_a_skipped_cycle_is_logged_once_in_the_service_s_words() -> None:
    stream = io.StringIO()
    configure_logging(fmt="text", level=logging.INFO, secrets=[], stream=stream)
    scheduler = AsyncIOScheduler()
    scheduler.add_listener(_log_scheduler_event, EVENT_JOB_MAX_INSTANCES)
    running, release, skipped = asyncio.Event(), asyncio.Event(), asyncio.Event()
    scheduler.add_listener(lambda _: skipped.set(), EVENT_JOB_MAX_INSTANCES)

    async def slow_cycle() -> None:
        running.set()
        await release.wait()

    scheduler.add_job(slow_cycle, "interval", hours=1, id="poll", max_instances=1, next_run_time=datetime.now(UTC))
    scheduler.start()
    try:
        await running.wait()
        scheduler.modify_job("poll", next_run_time=datetime.now(UTC))  # due again while the first still runs
        await skipped.wait()
    finally:
        release.set()
        scheduler.shutdown(wait=False)
    lines = [line for line in stream.getvalue().splitlines() if "skipped" in line]
    assert len(lines) == 1 and "poll: the previous run is still going; this run was skipped" in lines[0]

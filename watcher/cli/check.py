"""`benchwatch check` and `benchwatch schema`: what a config means, and the shape of events."""

from __future__ import annotations

import argparse
import sys

from rules.describe import describe_inhibit, describe_rule, describe_silence, describe_time_interval
from watcher.app.config import Config, load_config
from watcher.cli.state import config_file
from watcher.config.durations import format_duration_ms
from watcher.core.events import events_json_schema
from watcher.core.failureclass import FAILURE_CLASS_NAMES
from watcher.core.printable import printable
from watcher.pipeline.digest import DigestConfig


async def check(args: argparse.Namespace) -> int:
    """`benchwatch check CONFIG` (or `--config CONFIG`): validate, then describe notifiers, rules and silences."""
    path = config_file(args)
    config = load_config(path).config
    if not config.model_fields_set:
        print(
            f"{path}: valid, but it sets nothing: every setting takes its default — no job is watched, "
            "no notifier or rule is defined, so `run` would poll nothing and tell no one"
        )
        return 0
    print(f"{path}: OK")
    print(_catch_up_line(config))
    print(f"notifiers ({len(config.notifiers)}):")
    for name, notifier in config.notifiers.items():
        print(printable(f"  {name} ({notifier.type}): {notifier.destination()}"))
    print(f"rules ({len(config.rules)}):")
    for rule in config.rules:
        print(printable(f"  {describe_rule(rule)}"))
    if config.silences:
        print(f"silences ({len(config.silences)}):")
        for silence in config.silences:
            print(printable(f"  {describe_silence(silence)}"))
    _section("inhibit", [describe_inhibit(entry) for entry in config.inhibit])
    _section("time intervals", [describe_time_interval(interval) for interval in config.time_intervals])
    _section("digests", [_describe_digest(digest) for digest in config.digests])
    _failure_classes_note(config)
    used = {name for rule in config.rules for name in rule.notify} | {n for d in config.digests for n in d.notify}
    unused = sorted(set(config.notifiers) - used)
    if unused:
        print(f"note: notifiers no rule uses: {', '.join(unused)}")
    _baseline_note(config)
    if not config.watch.jobs and config.watch.discover is None:
        print("note: nothing to watch yet: watch.jobs and watch.discover are both empty")
    return 0


def _section(title: str, lines: list[str]) -> None:
    """A titled, indented list; nothing at all when it is empty."""
    if lines:
        print(f"{title} ({len(lines)}):")
        for line in lines:
            print(printable(f"  {line}"))


def _describe_digest(digest: DigestConfig) -> str:
    """`daily: every 1d at 09:00 Europe/Paris, jobs matching job_name=nightly-* → research-slack`."""
    matching = ", ".join(f"{path}={matcher.raw}" for path, matcher in digest.match.items()) or "every job"
    every = format_duration_ms(digest.every_ms)
    return f"{digest.name}: every {every} at {digest.at} {digest.time_zone}, {matching} → {', '.join(digest.notify)}"


def _failure_classes_note(config: Config) -> None:
    """Say which exception types the config adds to (or moves within) the built-in table of failure classes, and
    when `job.infra_degraded` is told — when the config says anything of them."""
    section = config.failure_classes
    added = [f"{name}: {', '.join(getattr(section, name))}" for name in FAILURE_CLASS_NAMES if getattr(section, name)]
    if added:
        print(f"failure classes, besides the built-in table: {'; '.join(added)}")
    if added or "infra_alert_ratio" in config.watch.model_fields_set:
        ratio = config.watch.infra_alert_ratio
        print(f"job.infra_degraded: {'never' if ratio is None else f'past {ratio:.0%} of scenarios failed in setup'}")


def _baseline_note(config: Config) -> None:
    """Say how jobs are compared; warn when rules wait for `job.compared` that nothing will emit."""
    baseline = config.baseline
    if baseline is not None:
        names = f"named {baseline.name!r}" if baseline.name else "of any name"
        print(
            f"baseline: each completed job vs the last earlier completed job of its benchmark {names}; flaky = "
            f"{baseline.flaky_flips}+ flips in {baseline.history} jobs"
        )
    elif any(rule.catches("job.compared") for rule in config.rules):
        print("note: rules on job.compared never fire without a baseline: section")


def _catch_up_line(config: Config) -> str:
    """What `watch.catch_up` means for a job the watcher meets late."""
    max_age_ms = config.watch.catch_up.max_age_ms
    if max_age_ms == 0:
        return "catch-up: off: a job first seen after it moved on is a starting point; what it did before is not told"
    return (
        f"catch-up: a job first seen after it moved on (created while the watcher was down, or between two passes) "
        f"is told in full, late, if it was created within {format_duration_ms(max_age_ms)} and after this state "
        "store's first pass; older ones are a starting point"
    )


async def schema(args: argparse.Namespace) -> int:
    """`benchwatch schema`: the JSON Schema of events."""
    sys.stdout.write(events_json_schema())
    return 0

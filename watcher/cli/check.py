"""`benchwatch check` and `benchwatch schema`: what a config means, and the shape of events."""

from __future__ import annotations

import argparse
import sys

from rules.describe import describe_inhibit, describe_rule, describe_silence, describe_time_interval
from watcher.app.config import Config, load_config
from watcher.cli.state import config_file
from watcher.core.events import events_json_schema


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
    print(f"notifiers ({len(config.notifiers)}):")
    for name, notifier in config.notifiers.items():
        print(f"  {name} ({notifier.type}): {notifier.destination()}")
    print(f"rules ({len(config.rules)}):")
    for rule in config.rules:
        print(f"  {describe_rule(rule)}")
    if config.silences:
        print(f"silences ({len(config.silences)}):")
        for silence in config.silences:
            print(f"  {describe_silence(silence)}")
    _section("inhibit", [describe_inhibit(entry) for entry in config.inhibit])
    _section("time intervals", [describe_time_interval(interval) for interval in config.time_intervals])
    unused = sorted(set(config.notifiers) - {name for rule in config.rules for name in rule.notify})
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
            print(f"  {line}")


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


async def schema(args: argparse.Namespace) -> int:
    """`benchwatch schema`: the JSON Schema of events."""
    sys.stdout.write(events_json_schema())
    return 0

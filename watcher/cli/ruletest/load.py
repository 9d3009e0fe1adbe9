"""Reading a rule test file: validated like a config (every problem at its file:line), its config loaded with the
file's own `env:`, its snapshots read, and every rule and notifier it names checked against the config."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from watcher.app.config import LoadedConfig, load_config
from watcher.cli.replay import ReplayInputError, read_snapshots, snapshot_from
from watcher.cli.ruletest.model import Expectation, NonExpectation, RuleTest, RuleTestFile
from watcher.config.loader import ConfigError, ConfigProblem, LoadedFile, Loc, format_path, load_yaml, validate_file
from watcher.core.snapshot import Snapshot


@dataclass(frozen=True)
class LoadedTest:
    """One test, ready to run: its snapshots read, and the lines of its checks (for failures' file:line)."""

    test: RuleTest
    line: int | None
    snapshots: Sequence[Snapshot]
    expect_lines: Sequence[int | None]
    expect_not_lines: Sequence[int | None]


@dataclass(frozen=True)
class LoadedTests:
    """A test file, its config and its tests."""

    path: Path
    config: LoadedConfig
    tests: Sequence[LoadedTest]


def load_tests(path: Path) -> LoadedTests:
    """Read a test file; raises `ConfigError` with every problem (the config's own, at the config's lines)."""
    loaded = load_yaml(path, {}, collect=True)
    spec = validate_file(RuleTestFile, loaded)
    config_path = path.parent / spec.config
    if not config_path.is_file():
        raise ConfigError([_problem(loaded, ("config",), f"no config file {str(config_path)!r}")])
    config = load_config(config_path, spec.env)
    problems: list[ConfigProblem] = []
    tests = [_test(loaded, index, test, config, problems) for index, test in enumerate(spec.tests)]
    if problems:
        raise ConfigError(problems)
    return LoadedTests(path, config, tests)


def _test(
    loaded: LoadedFile, index: int, test: RuleTest, config: LoadedConfig, problems: list[ConfigProblem]
) -> LoadedTest:
    loc: Loc = ("tests", index)
    for position, expectation in enumerate(test.expect):
        problems += _names(loaded, (*loc, "expect", position), expectation, config)
    for position, non_expectation in enumerate(test.expect_not):
        problems += _names(loaded, (*loc, "expect_not", position), non_expectation, config)
    return LoadedTest(
        test=test,
        line=loaded.line_of(loc),
        snapshots=_snapshots(loaded, index, test, problems),
        expect_lines=[loaded.line_of((*loc, "expect", n)) for n in range(len(test.expect))],
        expect_not_lines=[loaded.line_of((*loc, "expect_not", n)) for n in range(len(test.expect_not))],
    )


def _snapshots(loaded: LoadedFile, index: int, test: RuleTest, problems: list[ConfigProblem]) -> list[Snapshot]:
    loc: Loc = ("tests", index, "snapshots")
    try:
        if isinstance(test.snapshots, str):
            return read_snapshots(loaded.path.parent / test.snapshots)
        snapshots: list[Snapshot] = []
        for position, value in enumerate(test.snapshots):
            where = f"{loaded.path}:{loaded.line_of((*loc, position))}"
            snapshots.append(snapshot_from(value, where, snapshots[-1].at_ms if snapshots else None))
        return snapshots
    except ReplayInputError as exc:
        problems.append(_problem(loaded, loc, str(exc)))
    except OSError as exc:
        problems.append(_problem(loaded, loc, f"cannot read {exc.filename}: {exc.strerror}"))
    return []


def _names(
    loaded: LoadedFile, loc: Loc, check: Expectation | NonExpectation, config: LoadedConfig
) -> list[ConfigProblem]:
    """Unknown rule and notifier names are errors: a typo would make a check pass (or fail) for no reason."""
    rules = {rule.name: rule for rule in config.config.rules}
    notifiers = set(config.config.notifiers)
    rule = rules.get(check.rule)
    if rule is None:
        return [_problem(loaded, (*loc, "rule"), _unknown("rule", check.rule, rules, config.path))]
    if check.notifier is None:
        return []
    if check.notifier not in notifiers:
        return [_problem(loaded, (*loc, "notifier"), _unknown("notifier", check.notifier, notifiers, config.path))]
    if check.notifier not in rule.notify:
        message = f"rule {rule.name!r} does not notify {check.notifier!r} (it notifies {', '.join(rule.notify)})"
        return [_problem(loaded, (*loc, "notifier"), message)]
    return []


def _unknown(what: str, name: str, known: Iterable[str], config: Path) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known)) or 'none'})"
    return f"no {what} {name!r} in {config}{hint}"


def _problem(loaded: LoadedFile, loc: Loc, message: str) -> ConfigProblem:
    return ConfigProblem(str(loaded.path), loaded.line_of(loc), format_path(loc), message)

"""Checking a test's run against its expectations; a failed check reads as a diff: what was expected, what was
sent, and the decisions that led there (per event, the rule's last decision and its reason)."""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from watcher.cli.ruletest.load import LoadedTest
from watcher.cli.ruletest.model import Expectation, NonExpectation, Selection
from watcher.cli.ruletest.run import Outcome
from watcher.core.decisions import Decision, Verdict, describe
from watcher.core.events import Event
from watcher.core.notification import Notification

SHOWN: Final = 5  # notifications and events listed in a failure, at most (then "… and N more")


@dataclass(frozen=True)
class Failure:
    """One check that did not hold: where it is written, what it says, and why it failed (lines)."""

    line: int | None
    check: str
    lines: tuple[str, ...]


def failures(loaded: LoadedTest, outcome: Outcome) -> list[Failure]:
    """Every check of the test that does not hold, in the file's order."""
    found: list[Failure] = []
    for expectation, line in zip(loaded.test.expect, loaded.expect_lines, strict=True):
        problem = _expected(expectation, outcome)
        if problem:
            found.append(Failure(line, f"expect {expectation.shown()}", problem))
    for non_expectation, line in zip(loaded.test.expect_not, loaded.expect_not_lines, strict=True):
        problem = _not_expected(non_expectation, outcome)
        if problem:
            found.append(Failure(line, f"expect_not {non_expectation.shown()}", problem))
    return found


def _expected(expectation: Expectation, outcome: Outcome) -> tuple[str, ...]:
    of_rule = _sent(outcome.notifications, expectation)
    matching = [n for n in of_rule if _fits(expectation, n)]
    wanted = expectation.count
    if (wanted is None and matching) or len(matching) == wanted:
        return ()
    said = "at least 1" if wanted is None else str(wanted)
    lines = [f"expected {said} notification{'' if said == '1' else 's'} {_what(expectation)}, sent {len(matching)}"]
    if len(of_rule) != len(matching):
        lines.append(f"sent {len(of_rule)} {_about(expectation)} that differ:")
        lines += [f"  {_notification(n)}" for n in of_rule[:SHOWN]] + _more(of_rule)
    elif matching:
        lines += [f"  {_notification(n)}" for n in matching[:SHOWN]] + _more(matching)
    return (*lines, *_why(expectation, outcome))


def _not_expected(check: NonExpectation, outcome: Outcome) -> tuple[str, ...]:
    sent = _sent(outcome.notifications, check)
    if sent:
        lines = [f"expected nothing {_about(check)}, sent {len(sent)}:"]
        lines += [f"  {_notification(n)}" for n in sent[:SHOWN]] + _more(sent)
        return (*lines, *_why(check, outcome))
    if check.because is None:
        return ()
    if any(decision.verdict == check.because for _, decision in _finals(check, outcome)):
        return ()
    lines = [f"expected some event {_about(check)} not sent because {check.because}; none was"]
    return (*lines, *_why(check, outcome))


def _sent(notifications: Sequence[Notification], selection: Selection) -> list[Notification]:
    return [
        n
        for n in notifications
        if n.rule == selection.rule
        and (selection.notifier is None or n.notifier == selection.notifier)
        and any(_of_job(selection, event) for event in n.events)
    ]


def _of_job(selection: Selection, event: Event) -> bool:
    return (selection.job_name is None or fnmatch.fnmatchcase(event.job_name, selection.job_name)) and (
        selection.job_id is None or event.job_id == selection.job_id
    )


def _about(selection: Selection) -> str:
    """`of rule 'failures' to 'slack' about 'nightly-*'`."""
    return f"of rule {selection.rule!r}{_to(selection.notifier)}{_jobs(selection)}"


def _jobs(selection: Selection) -> str:
    jobs = [repr(value) for value in (selection.job_name, selection.job_id) if value is not None]
    return f" about {' '.join(jobs)}" if jobs else ""


def _fits(expectation: Expectation, notification: Notification) -> bool:
    return (
        (expectation.severity is None or notification.severity == expectation.severity)
        and (expectation.action is None or notification.action == expectation.action)
        and (expectation.title_contains is None or expectation.title_contains in notification.title)
        and (expectation.text_contains is None or expectation.text_contains in notification.text)
    )


def _what(expectation: Expectation) -> str:
    parts = [_about(expectation)]
    for name in ("severity", "action"):
        value = getattr(expectation, name)
        if value is not None:
            parts.append(f"{name} {value}")
    if expectation.title_contains is not None:
        parts.append(f"titled with {expectation.title_contains!r}")
    if expectation.text_contains is not None:
        parts.append(f"with {expectation.text_contains!r} in the text")
    return " ".join(parts[:1]) + (f" ({', '.join(parts[1:])})" if parts[1:] else "")


def _to(notifier: str | None) -> str:
    return "" if notifier is None else f" to {notifier!r}"


def _notification(n: Notification) -> str:
    return f"{n.id} → {n.notifier} [{n.severity}{', resolve' if n.action == 'resolve' else ''}] {n.title!r}"


def _more(items: Sequence[object]) -> list[str]:
    return [f"  … and {len(items) - SHOWN} more"] if len(items) > SHOWN else []


def _finals(selection: Selection, outcome: Outcome) -> list[tuple[Event, Decision]]:
    """Per event (of the job, if named), the rule's last decision about it."""
    last: dict[str, Decision] = {}
    for decision in outcome.decisions:
        if decision.rule == selection.rule:
            last[decision.event_id] = decision
    return [(event, last[event.id]) for event in outcome.events if event.id in last and _of_job(selection, event)]


def _why(selection: Selection, outcome: Outcome) -> list[str]:
    """The decisions that led there: each event the rule matched, with its last decision; or, when it matched
    none of the events it listens for, what turned them away."""
    rule = selection.rule
    listened = [
        (e, d) for e, d in _finals(selection, outcome) if not (d.verdict == Verdict.NOT_MATCHED and d.by == "on")
    ]
    reached = [(e, d) for e, d in listened if d.verdict not in {Verdict.NOT_MATCHED, Verdict.STOPPED}]
    if reached:
        lines = [f"decisions of rule {rule!r} ({len(reached)} event{'s' if len(reached) != 1 else ''} matched):"]
        lines += [f"  {event.kind} of {event.job_name} ({event.id}): {describe(d)}" for event, d in reached[:SHOWN]]
        return lines + _more(reached)
    if not listened:
        return [f"rule {rule!r} saw no event of the kinds it listens for (on:){_jobs(selection)}"]
    turned_away = Counter(describe(decision) for _, decision in listened)
    events = "the event" if len(listened) == 1 else f"the {len(listened)} events"
    lines = [f"rule {rule!r} matched none of {events} of its kinds{_jobs(selection)}:"]
    return lines + [f"  {count} × {reason}" for reason, count in turned_away.most_common(SHOWN)]

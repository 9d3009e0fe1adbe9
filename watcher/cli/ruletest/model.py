"""A rule test file: which config, which snapshots, what must be sent and what must not (and why not)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from rules.config import Where
from watcher.config.fields import AwareTime, DurationMs
from watcher.config.loader import StrictModel
from watcher.core.decisions import Verdict

Severity = Literal["info", "warning", "critical"]
# Why a notification was not sent, as `expect_not`'s `because` names it: a verdict other than `sent`.
BECAUSE = tuple(verdict.value for verdict in Verdict if verdict != Verdict.SENT)


class Selection(StrictModel):
    """Which notifications and events a check is about: a rule's, to one notifier, of one job (by name: a glob;
    or by id)."""

    rule: str
    notifier: str | None = None
    job_name: str | None = Field(None, description="a glob: some event of the notification is of such a job")
    job_id: str | None = None

    def shown(self) -> str:
        """As the test file says it, in one line."""
        return _flow(self.model_dump(exclude_none=True))


class Expectation(Selection):
    """`{rule: failures, notifier: slack, count: 1, title_contains: "4 scenarios failed"}`: notifications of
    the rule (to the notifier; of that job; …) were sent — `count` of them exactly, else at least one."""

    count: int | None = Field(None, ge=0)
    severity: Severity | None = None
    action: Literal["trigger", "resolve"] | None = None
    title_contains: str | None = None
    text_contains: str | None = None


class NonExpectation(Selection):
    """`{rule: finished, notifier: pager, because: inhibited}`: nothing of the rule was sent (to the notifier;
    about that job), and — with `because` — for at least one event that is why: its last decision."""

    because: str | None = None

    @field_validator("because")
    @classmethod
    def _a_verdict(cls, value: str | None) -> str | None:
        if value is not None and value not in BECAUSE:
            raise ValueError(f"expected one of {', '.join(BECAUSE)}, got {value!r}")
        return value


class SilenceSpec(StrictModel):
    """A silence for the test, as a runtime silence in the store (as `benchwatch silences add` makes one):
    from the first snapshot, `until` a time or `for` a while (else to the end)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    match: Where = Field(min_length=1)
    until: AwareTime | None = None
    for_ms: DurationMs | None = Field(None, alias="for")
    comment: str = ""
    created_by: str = "benchwatch test"

    @model_validator(mode="after")
    def _one_end(self) -> SilenceSpec:
        if self.until is not None and self.for_ms is not None:
            raise ValueError("give until or for, not both")
        return self


class RuleTest(StrictModel):
    """One test: snapshots (a recording's path, or views inline) through the config's rules, then the checks."""

    name: str = Field(min_length=1)
    snapshots: str | list[Any]
    silences: tuple[SilenceSpec, ...] = ()
    until: AwareTime | None = Field(None, description="stop the clock here: windows still open are `held`")
    expect: tuple[Expectation, ...] = ()
    expect_not: tuple[NonExpectation, ...] = ()

    @model_validator(mode="after")
    def _checks_something(self) -> RuleTest:
        if not self.expect and not self.expect_not:
            raise ValueError("give expect or expect_not: a test that checks nothing passes whatever the rules do")
        if isinstance(self.snapshots, list) and not self.snapshots:
            raise ValueError("snapshots: give a recording's path or at least one job view")
        return self


class RuleTestFile(StrictModel):
    """A whole test file: the config (relative to this file), the environment it reads, the tests."""

    config: str = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict, description="the only variables ${VAR} reads in the config")
    tests: tuple[RuleTest, ...]

    @model_validator(mode="after")
    def _some_tests(self) -> RuleTestFile:
        # Here, not as the field's min_length: pydantic would say so too when a test is only invalid.
        if not self.tests:
            raise ValueError("tests: give at least one test")
        return self


def _flow(data: dict[str, Any]) -> str:
    """`{rule: failures, count: 1}`: a mapping as YAML's flow style writes it (strings quoted only when needed)."""
    return "{" + ", ".join(f"{key}: {_scalar(value)}" for key, value in data.items()) + "}"


def _scalar(value: Any) -> str:
    if isinstance(value, str) and value and value.replace("-", "").replace("_", "").replace(".", "").isalnum():
        return value
    return json.dumps(value)

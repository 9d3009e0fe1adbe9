"""Infra or agent: which class a scenario's failure belongs to — `setup`, `timeout` or `agent`.

A researcher asks "did my agent get worse?"; the platform team asks "did the machines let the agent down?". The
class of a failure answers who should hear of it. It is decided from what the API reports of a scenario's end —
its state, whether it has a scenario run, and the exception type of its `failure_reason` — with a table of the
exception types the API reports, which the config can extend (`failure_classes:`, docs/regressions.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, get_args

from pydantic import BaseModel, ConfigDict

FailureClass = Literal["setup", "timeout", "agent"]
FAILURE_CLASS_NAMES: Final[tuple[FailureClass, ...]] = get_args(FailureClass)

_FAILED: Final = "FAILED"
_TIMEOUT: Final = "TIMEOUT"
_CANCELED: Final = "CANCELED"

BUILTIN_FAILURE_CLASSES: Final[Mapping[str, FailureClass]] = MappingProxyType(
    {
        # Before the agent ran: the scenario's environment could not be made ready.
        "DevboxSetupError": "setup",  # the devbox did not start (image pull, capacity)
        "EnvironmentStartTimeoutError": "setup",  # the environment did not start in time
        "AgentSetupTimeoutError": "setup",  # installing the agent into the environment did not finish in time
        # The agent ran out of time.
        "AgentTimeoutError": "timeout",
        # The agent ran and failed; listed to say so (an unknown type counts here too).
        "NonZeroAgentExitCodeError": "agent",  # the agent's process exited non-zero (a crash, OOM, a 401)
        "ScoringError": "agent",  # the scenario's tests crashed on what the agent left behind
        "RateLimitError": "agent",  # the model provider refused the agent's requests
    }
)


class FailureCounts(BaseModel):
    """How many failed or timed-out scenarios fall in each class."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    setup: int = 0
    timeout: int = 0
    agent: int = 0

    def text(self) -> str:
        """`3 setup, 5 agent`: the non-zero classes, in a fixed order; empty when there is nothing."""
        return ", ".join(f"{count} {name}" for name in FAILURE_CLASS_NAMES if (count := getattr(self, name)))

    @property
    def total(self) -> int:
        """Every counted failure."""
        return self.setup + self.timeout + self.agent


@dataclass(frozen=True, slots=True)
class FailureClasses:
    """The exception-type table and the rules around it: `classify` says a scenario end's class."""

    by_type: Mapping[str, FailureClass] = field(default_factory=lambda: BUILTIN_FAILURE_CLASSES)

    @classmethod
    def extended(cls, overrides: Mapping[FailureClass, Iterable[str]]) -> FailureClasses:
        """The built-in table with the config's entries on top (a type the config names takes the config's class)."""
        table = dict(BUILTIN_FAILURE_CLASSES)
        for name, types in overrides.items():
            table.update(dict.fromkeys(types, name))
        return cls(MappingProxyType(table))

    def classify(self, state: str, scenario_run_id: str | None, exception_type: str | None) -> FailureClass | None:
        """The class of a scenario that ended `state`; None for one that did not fail, time out or get canceled.

        In order: a failure or timeout with no scenario run failed before the agent ran (`setup`); an exception type
        in the table has its class; a timeout is `timeout`; the rest — unknown types, a cancellation — is `agent`.
        """
        if state not in (_FAILED, _TIMEOUT, _CANCELED):
            return None
        if state != _CANCELED and not scenario_run_id:
            return "setup"
        known = self.by_type.get(exception_type) if exception_type else None
        if known is not None:
            return known
        return "timeout" if state == _TIMEOUT else "agent"


DEFAULT_FAILURE_CLASSES: Final = FailureClasses()

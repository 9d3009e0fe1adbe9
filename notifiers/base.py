"""What every notifier config has: its delivery limits, applied once by the delivery worker."""

from __future__ import annotations

from pydantic import Field

from watcher.config.fields import DurationMs
from watcher.config.loader import StrictModel


class NotifierConfigBase(StrictModel):
    """Settings shared by every notifier type: how long to keep retrying, how many sends at once, how fast."""

    max_age_ms: DurationMs = Field(24 * 3_600_000, alias="max_age")
    concurrency: int = Field(4, ge=1, le=64)
    rate_per_s: float | None = Field(None, gt=0, description="at most this many sends per second; none: no limit")

    def destination(self) -> str:
        """Where it sends, for `benchwatch check` — never including a secret."""
        raise NotImplementedError

"""The benchwatch config file: every section, validated strictly, cross-checked, with file:line errors.

This is wiring: it knows the rules' and the notifiers' config models, as only the service and the CLI may.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, SecretStr, StringConstraints, field_validator, model_validator

from notifiers.registry import NotifierConfig
from rules.config import InhibitConfig, RuleConfig, SilenceConfig, cross_check_rules
from rules.timeintervals import TimeIntervalConfig
from watcher.api.client import DEFAULT_BASE_URL
from watcher.config.fields import DurationMs
from watcher.config.loader import ConfigError, ConfigProblem, StrictModel, format_path, load_yaml, validate_file
from watcher.core.failureclass import FAILURE_CLASS_NAMES, FailureClasses
from watcher.diff.infra import DEFAULT_INFRA_ALERT_RATIO
from watcher.pipeline.baseline import BaselineSection
from watcher.pipeline.digest import DigestConfig, cross_check_digests
from watcher.store.location import is_postgres_url, redact_url, url_problem

MIN_TOKEN_CHARS = 16
# A job id to poll: not empty, no surrounding spaces (`""` passed `check`, then failed every cycle with a traceback)
JobId = Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=r"^\S(.*\S)?$")]


class RunloopSection(StrictModel):
    """`runloop:` where the API is and the key to it."""

    base_url: str | None = None
    api_key: SecretStr | None = None

    def resolved_base_url(self, environ: Mapping[str, str]) -> str:
        """The configured URL, else `RUNLOOP_BASE_URL`, else the public API."""
        return (self.base_url or environ.get("RUNLOOP_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


class DiscoverSection(StrictModel):
    """`watch.discover:` also watch every listed job whose name matches, created recently enough."""

    name: str = "*"
    created_within_ms: DurationMs | None = Field(None, alias="created_within")
    max_jobs: int = Field(5000, ge=1, le=100_000, description="page the list no further than this many jobs")


class CatchUpSection(StrictModel):
    """`watch.catch_up:` how far back a job new to the watcher may have been created to be told in full (late)."""

    max_age_ms: DurationMs = Field(
        24 * 3_600_000,
        alias="max_age",
        ge=0,
        description="a job created longer ago than this when first seen is a starting point; 0 turns catch-up off",
    )


class WatchSection(StrictModel):
    """`watch:` which jobs, how often, and what counts as stalled."""

    jobs: tuple[JobId, ...] = ()
    discover: DiscoverSection | None = None
    poll_interval_ms: DurationMs = Field(30_000, alias="poll_interval", ge=1000)
    scenario_runs: bool = True
    stall_after_ms: DurationMs = Field(30 * 60_000, alias="stall_after", ge=1000)
    max_concurrent_requests: int = Field(8, ge=1, le=256)
    max_requests_per_s: float | None = Field(20.0, gt=0)
    api_unreachable_after_ms: DurationMs = Field(5 * 60_000, alias="api_unreachable_after", ge=1000)
    infra_alert_ratio: float | None = Field(
        DEFAULT_INFRA_ALERT_RATIO,
        gt=0,
        lt=1,
        description="job.infra_degraded when more than this share of a job's finished scenarios failed in setup; "
        "null: never",
    )
    poll_timeout_ms: DurationMs = Field(
        60_000, alias="poll_timeout", ge=1000, description="one job's poll, retries included, is given up after this"
    )
    jitter: float = Field(0.1, ge=0, le=0.5, description="each cycle starts up to this share of the interval late")
    spread: float = Field(0.7, ge=0, le=0.9, description="a cycle's polls start evenly over this share of the interval")
    catch_up: CatchUpSection = Field(default_factory=CatchUpSection)

    @model_validator(mode="after")
    def _spread_fits(self) -> Self:
        # A cycle must end before the next one starts, which jitter may bring forward by up to its share: 10 % of
        # the interval stays free for the last polls' work.
        if self.spread + self.jitter > 0.9:
            raise ValueError(f"spread ({self.spread:g}) + jitter ({self.jitter:g}) must be at most 0.9 of the interval")
        return self


class FailureClassesSection(StrictModel):
    """`failure_classes:` exception types to add to the built-in table of failure classes, or to move within it
    (docs/regressions.md, "Infra or agent")."""

    setup: tuple[str, ...] = Field((), description="exception types of failures before the agent ran")
    timeout: tuple[str, ...] = Field((), description="exception types of the agent running out of time")
    agent: tuple[str, ...] = Field((), description="exception types of the agent's own failures")

    @model_validator(mode="after")
    def _each_type_once(self) -> Self:
        where: dict[str, str] = {}
        for name in FAILURE_CLASS_NAMES:
            for exception_type in getattr(self, name):
                if not exception_type.strip():
                    raise ValueError(f"{name}: an exception type cannot be empty")
                if exception_type in where and where[exception_type] != name:
                    raise ValueError(f"{exception_type} is listed under both {where[exception_type]} and {name}")
                where[exception_type] = name
        return self

    def table(self) -> FailureClasses:
        """The built-in table with these types on top."""
        return FailureClasses.extended({name: getattr(self, name) for name in FAILURE_CLASS_NAMES})


class HttpSection(StrictModel):
    """`http:` the health, metrics and status endpoint."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535)
    # Actions (silences, retries, reload) need `Authorization: Bearer <token>`; without a token they are refused.
    token: SecretStr | None = None
    external_url: str | None = Field(None, description="where people reach the status page (behind a proxy)")

    @field_validator("external_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urllib.parse.urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("expected an http:// or https:// URL")
        return value

    def status_url(self) -> str:
        """The status page's address for links back to it: `external_url`, else http://host:port/ — the machine's
        name when `host` listens on every address (as Prometheus derives its external URL)."""
        if self.external_url is not None:
            return self.external_url.rstrip("/") + "/"
        host = socket.gethostname() if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < MIN_TOKEN_CHARS:
            raise ValueError(f"the token must be at least {MIN_TOKEN_CHARS} characters (try: openssl rand -hex 24)")
        return value


DEFAULT_STATE_PATH = "./benchwatch.db"


class StateSection(StrictModel):
    """`state:` where the state lives — `path:` an SQLite file (relative paths: from the config file's folder),
    for one process; or `url:` a PostgreSQL database, for one or more replicas. Exactly one of the two."""

    path: str | None = None
    url: SecretStr | None = Field(None, description="postgresql://user[:password]@host:port/database")
    lease_ttl_ms: DurationMs = Field(
        15_000,
        alias="lease_ttl",
        ge=1000,
        description="replicas: a job (or a send) whose holder stops renewing is taken over after this",
    )

    @model_validator(mode="after")
    def _one_location(self) -> Self:
        if self.path is not None and self.url is not None:
            raise ValueError("give either path (SQLite, one process) or url (PostgreSQL, replicas), not both")
        if self.url is not None and not is_postgres_url(self.url.get_secret_value()):
            raise ValueError("url must start with postgresql:// (for an SQLite file, use path)")
        if self.url is not None and (problem := url_problem(self.url.get_secret_value())) is not None:
            raise ValueError(f"url {redact_url(self.url.get_secret_value())} is not usable: {problem}")
        return self


class Config(StrictModel):
    """A whole benchwatch config file."""

    runloop: RunloopSection = Field(default_factory=RunloopSection)
    watch: WatchSection = Field(default_factory=WatchSection)
    state: StateSection = Field(default_factory=StateSection)
    http: HttpSection = Field(default_factory=HttpSection)
    notifiers: dict[str, NotifierConfig] = Field(default_factory=dict)
    rules: tuple[RuleConfig, ...] = ()
    silences: tuple[SilenceConfig, ...] = ()
    inhibit: tuple[InhibitConfig, ...] = ()
    time_intervals: tuple[TimeIntervalConfig, ...] = ()
    baseline: BaselineSection | None = None
    failure_classes: FailureClassesSection = Field(default_factory=FailureClassesSection)
    digests: tuple[DigestConfig, ...] = ()


class LoadedConfig:
    """A validated config and where it came from."""

    def __init__(self, config: Config, path: Path) -> None:
        self.config = config
        self.path = path

    def state_path(self) -> Path:
        """The SQLite file, relative paths taken from the config file's folder (the default one if the config
        names a PostgreSQL URL instead)."""
        state = Path(self.config.state.path or DEFAULT_STATE_PATH)
        return state if state.is_absolute() else (self.path.parent / state)

    def state_location(self) -> str | Path:
        """Where the store lives: the PostgreSQL URL (secret: never log it) or the SQLite file."""
        url = self.config.state.url
        return url.get_secret_value() if url is not None else self.state_path()


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    """Load, validate and cross-check a config file; raises ConfigError listing every problem found."""
    loaded = load_yaml(path, os.environ if environ is None else environ, collect=True)
    cross_problems = [
        ConfigProblem(str(path), loaded.line_of(loc), format_path(loc), message)
        for loc, message in [*cross_check_rules(loaded.data), *cross_check_digests(loaded.data)]
    ]
    try:
        config = validate_file(Config, loaded)
    except ConfigError as exc:
        raise ConfigError(exc.problems + cross_problems) from None
    if cross_problems:
        raise ConfigError(cross_problems)
    return LoadedConfig(config, path)

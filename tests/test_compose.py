"""docker-compose.yml stays runnable: every benchwatch command it runs parses, every file it mounts exists and
every config it mounts loads; its profiles start the setup each command asks for (the replicas by default, the SQLite
watcher with `--profile sqlite`, no simulator against the real API); its healthchecks run in the slim image and ask
what the status server serves. (No Docker engine on these machines: this checks what can be checked without one.)"""

from __future__ import annotations

import asyncio
import re
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ServerFactory
from tests.lifecycle import add_jobs, write_config
from watcher.app.config import load_config
from watcher.app.service import Service
from watcher.cli.main import build_parser, resolve_handler
from watcher.core.clock import ManualClock
from watcher.simulator import Simulator, create_app
from watcher.web.status import create_status_app

ROOT = Path(__file__).parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
REPLICAS = ("watcher-a", "watcher-b")


def _mounted_config(service: dict[str, Any], env: dict[str, str]) -> Any:
    mounts = [volume.split(":") for volume in service["volumes"]]
    files = {target: ROOT / source for source, target, *_ in mounts if source.startswith("./")}
    assert list(files) == ["/config/benchwatch.yaml"] and files["/config/benchwatch.yaml"].exists()
    return load_config(files["/config/benchwatch.yaml"], env).config


def test_the_services_are_there() -> None:
    assert set(SERVICES) == {"simulator", "mailcatcher", "postgres", *REPLICAS, "watcher"}
    assert SERVICES["watcher"]["profiles"] == ["sqlite"]  # the single-container setup: on demand
    assert {"state", "pgdata"} <= set(COMPOSE["volumes"])


def test_every_benchwatch_command_parses() -> None:
    commands = [s["command"] for s in SERVICES.values() if s.get("command", [""])[0] == "benchwatch"]
    assert len(commands) == 4
    for command in commands:
        args = build_parser().parse_args(command[1:])
        assert callable(resolve_handler(args.handler))


def test_the_replicas_share_one_postgres_database_and_wait_for_it() -> None:
    postgres = SERVICES["postgres"]
    password = "compose-demo-password"
    assert postgres["environment"]["POSTGRES_PASSWORD"] == "${PGPASSWORD:-" + password + "}"
    urls = set()
    for name in REPLICAS:
        replica = SERVICES[name]
        assert replica["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert replica["environment"]["PGPASSWORD"] == "${PGPASSWORD:-" + password + "}"
        config = _mounted_config(replica, {"RUNLOOP_API_KEY": "k", "PGPASSWORD": password})
        assert config.state.path is None and config.http.host == "0.0.0.0"
        assert replica["ports"][0].endswith(f":{config.http.port}")
        urls.add(config.state.url.get_secret_value())
    env = postgres["environment"]
    assert urls == {f"postgresql://{env['POSTGRES_USER']}:{password}@postgres:5432/{env['POSTGRES_DB']}"}
    assert len({SERVICES[name]["ports"][0].split(":")[1] for name in REPLICAS}) == 2  # one host port each


def test_the_sqlite_watcher_keeps_its_file_on_the_state_volume() -> None:
    watcher = SERVICES["watcher"]
    assert "state:/var/lib/benchwatch" in watcher["volumes"]
    config = _mounted_config(watcher, {"RUNLOOP_API_KEY": "k"})
    assert config.http.host == "0.0.0.0" and (config.state.path or "").startswith("/var/lib/benchwatch")
    assert config.notifiers["mail"].host == "mailcatcher"  # type: ignore[union-attr]
    assert watcher["ports"][0].endswith(f":{config.http.port}")


def test_the_dockerfile_installs_what_the_services_run() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for folder in ("watcher", "rules", "notifiers"):
        assert f"COPY {folder} ./{folder}" in dockerfile
    assert "-c constraints.txt" in dockerfile and "USER nobody" in dockerfile


# ---- profiles: what `docker compose [--profile P] up` starts, as Compose decides it ----

DOTENV = dict(
    line.split("=", 1) for line in (ROOT / ".env").read_text().splitlines() if line and not line.startswith("#")
)
_VARIABLE = re.compile(r"\$\{(\w+)(?::([-+])([^}]*))?\}")
_PROFILE_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")  # Compose's rule for a profile name


def interpolated(text: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:+replacement}` (the forms docker-compose.yml uses)."""

    def one(match: re.Match[str]) -> str:
        value = env.get(match.group(1), "")
        if match.group(2) == "-":
            return value or match.group(3)
        if match.group(2) == "+":
            return match.group(3) if value else ""
        return value

    return _VARIABLE.sub(one, text)


def started(flags: list[str], env: dict[str, str]) -> set[str]:
    """The services `docker compose [--profile F ...] up` starts: the --profile flags, else COMPOSE_PROFILES from the
    environment, else from .env; a service without profiles always. Dependencies must be started too, unless
    optional (`required: false`)."""
    active = set(flags or (env.get("COMPOSE_PROFILES") or DOTENV.get("COMPOSE_PROFILES", "")).split(","))
    enabled = set()
    for name, service in SERVICES.items():
        profiles = [interpolated(profile, env) for profile in service.get("profiles", [])]
        assert all(_PROFILE_NAME.fullmatch(profile) for profile in profiles), (name, profiles)
        if not profiles or active & set(profiles):
            enabled.add(name)
    for name in enabled:
        for dependency, condition in SERVICES[name].get("depends_on", {}).items():
            assert dependency in enabled or condition.get("required") is False, f"{name} needs {dependency}"
    return enabled


def test_compose_up_starts_the_replicas_on_postgresql_with_the_simulator() -> None:
    assert started([], {}) == {"simulator", "mailcatcher", "postgres", *REPLICAS}


def test_the_sqlite_profile_starts_only_the_sqlite_setup() -> None:
    services = started(["sqlite"], {})
    assert services == {"simulator", "mailcatcher", "watcher"}
    host_ports = [port.rsplit(":", 1)[0] for name in services for port in SERVICES[name].get("ports", [])]
    assert len(host_ports) == len(set(host_ports))  # watcher-a, which also publishes 9108, stays down


@pytest.mark.parametrize(("flags", "wanted"), [([], {"postgres", *REPLICAS}), (["sqlite"], {"watcher"})])
def test_the_real_api_starts_no_simulator(flags: list[str], wanted: set[str]) -> None:
    env = {"RUNLOOP_BASE_URL": "https://api.runloop.ai", "RUNLOOP_API_KEY": "k"}
    assert started(flags, env) == {"mailcatcher", *wanted}
    for name in wanted - {"postgres"}:  # and the watchers point at it
        assert interpolated(SERVICES[name]["environment"]["RUNLOOP_BASE_URL"], env) == "https://api.runloop.ai"


# ---- healthchecks the slim image can run ----

WATCHERS = ("watcher", *REPLICAS)


def test_every_watcher_has_a_healthcheck_on_its_readiness_in_python() -> None:
    for name in WATCHERS:
        service = SERVICES[name]
        test = service["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"] and "curl" not in " ".join(test)  # python:3.11-slim has no curl
        url = re.search(r"'(http://[^']+)'", test[3])
        assert url is not None
        parts = urllib.parse.urlsplit(url.group(1))
        env = {"RUNLOOP_API_KEY": "k", "PGPASSWORD": "pw"}
        assert parts.port == _mounted_config(service, env).http.port
        assert parts.path in {route.resource.canonical for route in create_status_app(None).router.routes()}  # type: ignore[arg-type]


async def test_the_healthcheck_command_fails_until_ready_then_passes(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    """The healthcheck's own Python, run against a real status server: unhealthy before the first poll cycle,
    healthy after it."""
    clock = ManualClock()
    sim = Simulator(seed=5, clock=clock, api_key="e2e-key")
    add_jobs(sim)
    api = str((await aiohttp_server(create_app(sim))).make_url("")).rstrip("/")

    async def sleep(seconds: float) -> None:
        clock.advance(round(seconds * 1000))

    service = Service(load_config(write_config(tmp_path, api, "http://127.0.0.1:9/hook")), clock=clock, sleep=sleep)
    code = SERVICES["watcher"]["healthcheck"]["test"][3]
    async with service.started():
        assert service.status is not None
        check = [sys.executable, "-c", code.replace(":9108/", f":{service.status.port}/")]

        async def healthy() -> bool:
            process = await asyncio.create_subprocess_exec(*check, stderr=asyncio.subprocess.DEVNULL)
            return await process.wait() == 0

        assert not await healthy()  # 503: no poll cycle has finished yet
        await service.poll_once()
        assert await healthy()

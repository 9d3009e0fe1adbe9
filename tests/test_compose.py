"""docker-compose.yml stays runnable: every benchwatch command it runs parses, every file it mounts exists and
every config it mounts loads. (No Docker engine on these machines: this checks what can be checked without one.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from watcher.app.config import load_config
from watcher.cli.main import build_parser, resolve_handler

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

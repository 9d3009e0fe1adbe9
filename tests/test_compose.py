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


def test_the_three_services_are_there() -> None:
    assert set(COMPOSE["services"]) == {"watcher", "simulator", "mailcatcher"}
    assert "state" in COMPOSE["volumes"]


def test_every_benchwatch_command_parses() -> None:
    commands = [s["command"] for s in COMPOSE["services"].values() if s.get("command", [""])[0] == "benchwatch"]
    assert len(commands) == 2
    for command in commands:
        args = build_parser().parse_args(command[1:])
        assert callable(resolve_handler(args.handler))


def test_mounted_files_exist_and_the_config_loads(tmp_path: Path) -> None:
    watcher = COMPOSE["services"]["watcher"]
    mounts = [volume.split(":") for volume in watcher["volumes"]]
    files = {target: ROOT / source for source, target, *_ in mounts if source.startswith("./")}
    assert files == {"/config/benchwatch.yaml": ROOT / "deploy" / "benchwatch.yaml"}
    assert all(path.exists() for path in files.values())
    config = load_config(files["/config/benchwatch.yaml"], {"RUNLOOP_API_KEY": "k"}).config
    assert config.http.host == "0.0.0.0" and config.state.path.startswith("/var/lib/benchwatch")
    assert config.notifiers["mail"].host == "mailcatcher"  # type: ignore[union-attr]
    assert watcher["ports"][0].endswith(f":{config.http.port}")


def test_the_dockerfile_installs_what_the_services_run() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for folder in ("watcher", "rules", "notifiers"):
        assert f"COPY {folder} ./{folder}" in dockerfile
    assert "-c constraints.txt" in dockerfile and "USER nobody" in dockerfile

"""deploy/systemd and deploy/kubernetes hold against what the service really is: the probe and scrape paths are
routes the status server serves, the ports are the config's, the reload signal is the one `benchwatch run` handles,
the commands parse, and the configs they install load with the keys their environment provides. (No systemd or
cluster here: this checks what can be checked by parsing.)"""

from __future__ import annotations

import inspect
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from watcher.app.config import Config, load_config
from watcher.cli.main import build_parser, resolve_handler
from watcher.cli.run import run_service
from watcher.web.status import create_status_app

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "deploy" / "systemd" / "benchwatch.service"
KUBERNETES = ROOT / "deploy" / "kubernetes"
STOP_GRACE_S = 10  # the service's own stop grace (docs/operations.md#stopping); the platform must wait longer


def served_paths() -> set[str]:
    """The status server's routes, from its real aiohttp application."""
    app = create_status_app(None)  # type: ignore[arg-type]  # routes only: nothing is served
    return {route.resource.canonical for route in app.router.routes() if route.resource is not None}


def unit_settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as section → key → values (a key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_run_reloads_on_sighup() -> None:
    """What both ExecReload and the Kubernetes reload send: `benchwatch run` installs a SIGHUP handler that reloads."""
    assert "add_signal_handler(signal.SIGHUP, service.reload_soon)" in inspect.getsource(run_service)


def test_the_systemd_unit_is_hardened_and_runs_what_the_service_is() -> None:
    unit = unit_settings(UNIT)
    service = {key: values[-1] for key, values in unit["Service"].items()}
    hardening = {"DynamicUser": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "NoNewPrivileges": "yes",
                 "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": ""}  # fmt: skip
    assert {key: service.get(key) for key in hardening} == hardening
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM" and int(service["TimeoutStopSec"]) > STOP_GRACE_S
    command = shlex.split(service["ExecStart"])
    assert Path(command[0]).name == "benchwatch"
    args = build_parser().parse_args(command[1:])
    assert callable(resolve_handler(args.handler)) and args.handler.endswith("run_service")
    assert args.config.parent == Path("/etc") / service["ConfigurationDirectory"]
    # The config it is told to install keeps its SQLite file in the one folder it may write.
    installed = load_config(ROOT / "deploy" / "benchwatch.yaml", {"RUNLOOP_API_KEY": "k"}).config
    assert (installed.state.path or "").startswith(f"/var/lib/{service['StateDirectory']}/")
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def kubernetes() -> dict[str, Any]:
    """Every manifest kustomization.yaml lists, by kind."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    documents = [yaml.safe_load((KUBERNETES / name).read_text()) for name in kustomization["resources"]]
    assert len({doc["kind"] for doc in documents}) == len(documents)
    return {doc["kind"]: doc for doc in documents}


@pytest.fixture
def manifests() -> dict[str, Any]:
    return kubernetes()


def _config(manifests: dict[str, Any], tmp_path: Path) -> tuple[Config, str]:
    """The ConfigMap's config, loaded with exactly the Secret's keys as environment; and its file name."""
    [(name, text)] = manifests["ConfigMap"]["data"].items()
    path = tmp_path / name
    path.write_text(text)
    return load_config(path, dict(manifests["Secret"]["stringData"])).config, name


def test_the_deployment_probes_and_scrapes_what_the_status_server_serves(
    manifests: dict[str, Any], tmp_path: Path
) -> None:
    config, _ = _config(manifests, tmp_path)
    pod = manifests["Deployment"]["spec"]["template"]
    [container] = pod["spec"]["containers"]
    [port] = container["ports"]
    assert port["containerPort"] == config.http.port and config.http.host == "0.0.0.0"
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": port["name"]}
        assert path in served_paths()
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in served_paths()
    assert int(annotations["prometheus.io/port"]) == port["containerPort"]
    service_port = manifests["Service"]["spec"]["ports"][0]
    assert (service_port["port"], service_port["targetPort"]) == (config.http.port, port["name"])
    assert manifests["Service"]["spec"]["selector"] == manifests["Deployment"]["spec"]["selector"]["matchLabels"]


def test_the_replicas_share_postgresql_and_read_their_keys_from_the_secret(
    manifests: dict[str, Any], tmp_path: Path
) -> None:
    config, name = _config(manifests, tmp_path)  # loads: every key is the config model's, every ${VAR} is given
    deployment = manifests["Deployment"]
    assert deployment["spec"]["replicas"] >= 2 and config.state.url is not None  # SQLite takes one process only
    text = next(iter(manifests["ConfigMap"]["data"].values()))
    assert set(re.findall(r"\$\{(\w+)", text)) == set(manifests["Secret"]["stringData"])
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": manifests["Secret"]["metadata"]["name"]}}]
    args = build_parser().parse_args(container["args"][1:])
    assert callable(resolve_handler(args.handler)) and args.handler.endswith("run_service")
    [mount] = container["volumeMounts"]
    [volume] = pod["volumes"]
    assert (mount["name"], mount["readOnly"]) == (volume["name"], True)
    assert volume["configMap"]["name"] == manifests["ConfigMap"]["metadata"]["name"]
    assert args.config == Path(mount["mountPath"]) / name
    assert pod["terminationGracePeriodSeconds"] > STOP_GRACE_S
    assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]

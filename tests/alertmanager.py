"""A real Alertmanager for tests: Debian's `prometheus-alertmanager` on a free port, with its own storage folder and
no cluster, started once per test module; `amtool` (same package) beside it.

Readiness is read from the process itself — its "Listening on" log line, within a deadline — then confirmed on
`/-/ready`: no sleeping and polling.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")
AMTOOL = Path("/usr/bin/amtool")
START_DEADLINE_S = 20.0

# One receiver that goes nowhere: the tests look at what Alertmanager holds (its API, amtool), not at what it sends.
MINIMAL_CONFIG = """\
route:
  receiver: nowhere
receivers:
  - name: nowhere
"""


class RunningAlertmanager:
    """A started Alertmanager: its address, and what its API and amtool say."""

    def __init__(self, url: str) -> None:
        self.url = url

    def alerts(self, alertname: str) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds under `alertname` (active and suppressed; resolved ones are not listed)."""
        query = urllib.parse.urlencode({"filter": f'alertname="{alertname}"'})
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts?{query}", timeout=5) as response:
            alerts: list[dict[str, Any]] = json.load(response)
        return alerts

    def amtool(self, *args: str) -> str:
        """Run amtool against this Alertmanager; its standard output."""
        done = subprocess.run(
            [str(AMTOOL), *args, f"--alertmanager.url={self.url}"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        return done.stdout

    def amtool_alerts(self, alertname: str, *flags: str) -> list[dict[str, Any]]:
        """`amtool alert query alertname=…` as JSON (amtool shows active alerts only unless told otherwise)."""
        listed: list[dict[str, Any]] = json.loads(
            self.amtool("alert", "query", *flags, f"alertname={alertname}", "-o", "json")
        )
        return listed


@contextmanager
def running_alertmanager(folder: Path) -> Iterator[RunningAlertmanager]:
    """Start Alertmanager with a minimal config in `folder`; stop it (and wait for it) afterwards."""
    config = folder / "alertmanager.yml"
    config.write_text(MINIMAL_CONFIG)
    port = _free_port()
    process = subprocess.Popen(
        [
            str(ALERTMANAGER),
            f"--config.file={config}",
            f"--storage.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip: one instance, ready at once
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        log = _until_listening(process, START_DEADLINE_S)
        # Read the rest of its log in the background, so a full pipe never blocks it.
        threading.Thread(target=_drain, args=(process,), daemon=True).start()
        url = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{url}/-/ready", timeout=5) as response:
            assert response.status == 200, log
        yield RunningAlertmanager(url)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _until_listening(process: subprocess.Popen[bytes], deadline_s: float) -> str:
    """Alertmanager's log up to the line saying it listens; raises if it exits or the deadline passes. Read from
    the pipe's descriptor itself (a buffered reader could hold the line while `select` waits for more)."""
    assert process.stderr is not None
    fd = process.stderr.fileno()
    log = b""
    end = time.monotonic() + deadline_s
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b'msg="Listening on"' not in log:
            remaining = end - time.monotonic()
            if remaining <= 0 or not selector.select(timeout=remaining):
                raise RuntimeError(f"Alertmanager did not listen within {deadline_s:g}s: {log[-500:]!r}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"Alertmanager exited ({process.wait()}): {log[-500:]!r}")
            log += chunk
    return log.decode(errors="replace")


def _drain(process: subprocess.Popen[bytes]) -> None:
    assert process.stderr is not None
    while os.read(process.stderr.fileno(), 65536):
        pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port

"""The benchmark harness keeps working: a tiny run of each benchmark (the figures are not judged here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_quick_run_prints_tables_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "notify-latency" in result.stdout and "baseline" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["notify-latency"]["rounds"] == 20 and figures["machine"]["cpus"]

"""The house follows the data flow: each room imports only the rooms below it, and nothing imports in a circle.

Every import counts, at module level or inside a function: a cycle hidden behind a function-level import is
still a cycle (docs/layout.md).
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("watcher", "rules", "notifiers", "benchmarks")

# what the pipeline may use: every room of the data flow below the process's wiring
_BELOW_PIPELINE = {
    "watcher.core",
    "watcher.config",
    "watcher.api",
    "watcher.diff",
    "watcher.store",
    "watcher.simulator",
    "rules",
    "notifiers",
}

# room → the rooms it may import (besides itself): core < … < pipeline < web < app < cli
ALLOWED: dict[str, set[str]] = {
    "watcher.core": set(),
    "watcher.config": {"watcher.core"},
    "watcher.api": {"watcher.core", "watcher.config"},
    "watcher.diff": {"watcher.core"},
    "watcher.store": {"watcher.core"},
    "watcher.simulator": {"watcher.core"},
    "rules": {"watcher.core", "watcher.config"},
    "notifiers": {"watcher.core", "watcher.config"},
    "watcher.pipeline": _BELOW_PIPELINE,
    "watcher.web": {*_BELOW_PIPELINE, "watcher.pipeline"},
    "watcher.app": {*_BELOW_PIPELINE, "watcher.pipeline", "watcher.web"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path, known: set[str]) -> Iterator[str]:
    """Every module of ours that `module` imports, wherever the import stands."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            ours = target
            while ours and ours not in known:
                ours = ours.rpartition(".")[0]
            if ours and ours != module:
                yield ours


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {module: set(_imports(module, path, known)) for module, path in modules.items()}


def _room(module: str) -> str | None:
    for room in sorted(ALLOWED, key=len, reverse=True):
        if module == room or module.startswith(room + "."):
            return room
    return None


def test_each_room_imports_only_the_rooms_below_it() -> None:
    wrong = []
    for module, targets in _graph().items():
        room = _room(module)
        if room is None:
            continue  # watcher.cli and benchmarks see everything
        for target in targets:
            target_room = _room(target)
            if target_room != room and target_room not in ALLOWED[room]:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


@pytest.mark.slow
def test_no_import_cycle_even_inside_functions() -> None:
    try:
        tuple(graphlib.TopologicalSorter(_graph()).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_the_checker_sees_a_cycle_behind_a_function_level_import(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("def f():\n    from b import g\n")
    known = {"a", "b"}
    assert set(_imports("a", tmp_path / "a.py", known)) == {"b"}


def test_help_imports_neither_aiohttp_nor_pydantic_nor_a_command() -> None:
    """`benchwatch --help` builds the parser from argparse alone (docs/performance.md, "Start-up")."""
    probe = (
        "import sys\n"
        "from watcher.cli.main import build_parser\n"
        "build_parser().format_help()\n"
        "heavy = ('aiohttp', 'pydantic', 'yaml', 'rich', 'celpy', 'rules', 'notifiers', 'watcher.app',\n"
        "         'watcher.web', 'watcher.pipeline', 'watcher.api')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith(heavy)))\n"
    )
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert shown.stdout.strip() == "[]"

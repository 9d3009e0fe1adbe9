"""Config fuzzing: seeded mutations of the example configs, each loaded and described in process as `benchwatch
check` does. Every one must be accepted or rejected with a ConfigError — never a traceback.

`python -m benchmarks chaos` runs a thousand and more; tests/test_config_fuzz.py runs a hundred.
"""

from __future__ import annotations

import contextlib
import copy
import io
import random
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rules.describe import describe_rule, describe_silence
from rules.engine import Router
from watcher.app.config import LoadedConfig, load_config
from watcher.config.loader import ConfigError, load_yaml

ROOT = Path(__file__).resolve().parent.parent
SEEDS = sorted((ROOT / "examples").glob("*.yaml"))
ENVIRON = {
    "RUNLOOP_API_KEY": "rl_key",
    "SLACK_BOT_TOKEN": "xoxb-1",
    "RESULTS_WEBHOOK_SECRET": "whsec",
    "RESULTS_WEBHOOK_URL": "https://example.com/hook",
}

# What a hurried or hostile hand puts where a value goes.
HOSTILE: tuple[Any, ...] = (
    None, True, 0, -1, 10**30, -(10**30), 1.5, float("nan"), float("inf"), "", " ", "x" * 10_000,
    [], {}, [1, [2, [3]]], {"a": {"b": {"c": None}}}, ["30s", "5m"], {"lt": 1}, {"gt": "x"},
    "1000000000d", "99999999999999999999999999999999999999999999s", "0", "-5m", "1e400s", "5", "1h30", "30x",
    "a\r\nBcc: victim@example.com", "ops@example.com\r\nBcc: x@y", "X-Evil\r\nInjected", "{{", "{% if %}",
    "{% for x in y %}" * 300 + "{% endfor %}" * 300, "{{ " + "(" * 300 + "1" + ")" * 300 + " }}",
    "summary.n_done >", "((((((((((((((((((((((((((((((1))))))))))))))))))))))))))))))", "2026-13-45T99:99:99Z",
    "2026-12-01T00:00:00", "2020-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "[", "*", "<<", "\x00", "\u202e",
    "${UNSET_VARIABLE}", "${", "$$", "./does/not/exist", "/etc/shadow", "@here", "<!channel>", "job.*", "nope.*",
)  # fmt: skip
KEYS = ("name", "on", "where", "when", "notify", "group_by", "group_wait", "repeat_interval", "severity",
        "continue", "dedup_key", "resolves", "title", "text", "type", "url", "channel", "token", "to", "headers",
        "poll_interval", "stall_after", "created_within", "starts", "until", "match", "comment", "spread", "jitter",
        "port", "host", "max_jobs", "api_unreachable_after", "secret", "format", "smtp", "from")  # fmt: skip
TEXT_MUTATIONS = ("deep_list", "deep_map", "truncate", "flip", "empty", "comment_only", "tabs", "anchor_bomb")


class _Verbatim(dict[str, str]):
    """An environment in which `${VAR}` stands for itself, so the seed configs are mutated as written."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> str:
        return "${" + key + "}"


@dataclass
class FuzzReport:
    """How mutated configs fared: accepted, rejected with a ConfigError, or crashed (with the tracebacks)."""

    accepted: int = 0
    rejected: int = 0
    crashes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Configs tried."""
        return self.accepted + self.rejected + len(self.crashes)


def _paths(data: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield here
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, (*here, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _paths(value, (*here, index))


def _set(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return data


def _mutate_data(data: Any, rng: random.Random) -> Any:
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        paths = list(_paths(data))
        path = rng.choice(paths)
        choice = rng.random()
        if choice < 0.6:
            data = _set(data, path, copy.deepcopy(rng.choice(HOSTILE)))
        elif choice < 0.8:
            target = _get(data, path)
            if isinstance(target, dict):
                target[rng.choice(KEYS)] = copy.deepcopy(rng.choice(HOSTILE))
        elif path and isinstance(_get(data, path[:-1]), (dict, list)):
            parent = _get(data, path[:-1])
            del parent[path[-1]]
    return data


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def _mutate_text(text: str, rng: random.Random) -> str:
    kind = rng.choice(TEXT_MUTATIONS)
    depth = rng.choice((50, 500, 5000))
    if kind == "deep_list":
        return "watch:\n  jobs: " + "[" * depth + "]" * depth + "\n"
    if kind == "deep_map":
        return "rules: " + "{a: " * depth + "1" + "}" * depth + "\n"
    if kind == "truncate":
        return text[: rng.randrange(len(text))]
    if kind == "flip":
        at = rng.randrange(len(text))
        return text[:at] + rng.choice("{}[]:-&*!|>'\"%@`\t\r\n") + text[at + 1 :]
    if kind == "empty":
        return rng.choice(("", "\n", "---\n", "# nothing\n"))
    if kind == "comment_only":
        return "# only a comment\n"
    if kind == "tabs":
        return text.replace("  ", "\t", 1)
    return "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8)
    )


def mutated_configs(seed: int, count: int) -> Iterator[str]:
    """`count` mutated config texts, the same ones for the same seed."""
    rng = random.Random(seed)
    # Read as benchwatch reads them (YAML 1.2: `on:` stays a key), values as written (no ${VAR} filled in).
    seeds = [(path.read_text(), load_yaml(path, _Verbatim()).data) for path in SEEDS]
    for _ in range(count):
        text, data = rng.choice(seeds)
        if rng.random() < 0.2:
            yield _mutate_text(text, rng)
            continue
        mutated = _mutate_data(data, rng)
        try:
            yield yaml.safe_dump(mutated, allow_unicode=True, width=10**6)
        except (yaml.YAMLError, RecursionError):
            yield text


def exercise(loaded: LoadedConfig) -> None:
    """What `check` and the start of `run` do with an accepted config: describe it, build its router."""
    config = loaded.config
    for rule in config.rules:
        describe_rule(rule)
    for silence in config.silences:
        describe_silence(silence)
    Router(config.rules, config.silences)


def try_config(path: Path, report: FuzzReport) -> None:
    """Load one config file as `check` does and file the outcome in `report`."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exercise(load_config(path, ENVIRON))
    except ConfigError as exc:
        report.rejected += 1
        if not str(exc).strip():
            report.crashes.append(f"{path}: a ConfigError without a message")
    except Exception:  # the finding itself: anything else is a crash to report
        report.crashes.append(f"{path}:\n{traceback.format_exc()}")
    else:
        report.accepted += 1


def fuzz(folder: Path, *, seed: int = 0, count: int = 1000) -> FuzzReport:
    """Write and load `count` mutated configs in `folder`."""
    report = FuzzReport()
    (folder / "secrets").mkdir(parents=True, exist_ok=True)
    (folder / "secrets" / "pagerduty-routing-key").write_text("R0UTINGKEY0000000000000000000000\n")
    for index, text in enumerate(mutated_configs(seed, count)):
        path = folder / f"fuzz-{index:05d}.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try_config(path, report)
        path.unlink()
    return report

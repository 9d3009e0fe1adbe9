"""The `benchwatch` command line. Every error ends as one readable line on stderr and a non-zero exit code."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from watcher.cli.errors import EXIT_API, EXIT_USAGE
from watcher.cli.wait import defaults as wait

# Each command's module is imported only when that command runs: `benchwatch --help` and argument errors need
# argparse alone (aiohttp and pydantic cost most of a second; docs/performance.md, "Start-up").
Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="benchwatch",
        description="Watch Runloop benchmark jobs and tell the right people what changed.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details (never secrets)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_simulate(sub)
    _add_demo(sub)
    _add_jobs(sub)
    _add_job(sub)
    _add_wait(sub)
    _add_compare(sub)
    _add_replay(sub)
    _add_record(sub)
    _add_check(sub)
    _add_test(sub)
    _add_deliveries(sub)
    _add_explain(sub)
    _add_silences(sub)
    _add_test_notify(sub)
    sub.add_parser(
        "schema", help="print the JSON Schema of events", description="Print the JSON Schema of every event kind."
    ).set_defaults(handler="watcher.cli.check:schema")
    return parser


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run the watcher: poll, diff, route, deliver, until SIGTERM/SIGINT",
        description="Run the watcher service with a config file (see docs/operations.md): scheduled polling, "
        "discovery, stall and outage detection, durable delivery, and a health/metrics endpoint.",
    )
    p.add_argument("--config", type=Path, required=True, help="the YAML config file")
    p.add_argument("--log-format", choices=["text", "json"], default="text", help="log lines (default: %(default)s)")
    p.add_argument(
        "--record", type=Path, metavar="DIR", help="also write each changed snapshot polled, as replay lines"
    )
    p.set_defaults(handler="watcher.cli.run:run_service", configures_logging=True)


def _add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate",
        help="serve a simulated Runloop benchmark API (no account needed)",
        description="Serve the Runloop benchmark API with simulated jobs on an accelerated clock. "
        "Point benchwatch (or the official SDK) at it with RUNLOOP_BASE_URL=http://HOST:PORT.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8787, help="port to listen on (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default: %(default)s)")
    p.add_argument(
        "--speed",
        type=_positive_float,
        default=60.0,
        help="simulated seconds per real second (default: %(default)s)",
    )
    p.add_argument(
        "--manual-clock",
        action="store_true",
        help="start the clock at the current time and move it only on POST /_sim/clock (ignores --speed)",
    )
    p.add_argument("--api-key", help="require this bearer token (default: accept any request)")
    p.add_argument("--jobs", type=_non_negative_int, default=0, help="extra random jobs to create at start")
    p.add_argument("--no-demo-jobs", action="store_true", help="start without the four demo jobs")
    faults = p.add_argument_group("fault injection (shares of API responses, 0..1; change later with PUT /_sim/faults)")
    for flag, help_text in (
        ("--rate-429", "answer 429 Too Many Requests (with Retry-After)"),
        ("--rate-500", "answer 500 Internal Server Error"),
        ("--rate-503", "answer 503 Service Unavailable"),
        ("--rate-truncated", "cut the body short and drop the connection"),
        ("--rate-malformed", "send a body that is not valid JSON"),
    ):
        faults.add_argument(flag, type=_share, default=0.0, help=help_text)
    faults.add_argument("--latency-ms", type=_non_negative_int, default=0, help="delay every API response")
    p.set_defaults(handler="watcher.cli.simulate:simulate")


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="see benchwatch work in a minute: simulator + watcher, no account, no config",
        description="Start the simulator in-process with four demo jobs and watch them until they settle.",
    )
    p.add_argument("--speed", type=_positive_float, default=60.0, help="simulated seconds per real second")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulation (default: %(default)s)")
    p.add_argument("--interval", type=_at_least_one, default=1.0, help="seconds between polls (default: %(default)s)")
    p.add_argument("--max-seconds", type=_positive_float, default=120.0, help="stop after this long at most")
    p.set_defaults(handler="watcher.cli.demo:demo")


def _add_api_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-url", help="API address (default: $RUNLOOP_BASE_URL or https://api.runloop.ai)")


def _add_jobs(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "jobs",
        help="list benchmark jobs, newest first",
        description="List benchmark jobs, newest first. The key comes from $RUNLOOP_API_KEY.",
    )
    _add_api_options(p)
    p.add_argument("--name", metavar="GLOB", help="only jobs whose name matches (exact, or a glob: 'nightly-*')")
    p.add_argument("--search", help="only jobs whose id or name contains this")
    p.add_argument(
        "--state", action="append", metavar="STATE", help="only jobs in this state (repeat, or comma-separated)"
    )
    p.add_argument("--limit", type=_non_negative_int, default=20, help="at most this many jobs (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object per job per line")
    p.set_defaults(handler="watcher.cli.jobs:list_jobs")


def _add_job(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "job",
        help="print one benchmark job as JSON",
        description="Fetch one benchmark job and print it as one line of JSON (a line `benchwatch replay` reads). "
        "The key comes from $RUNLOOP_API_KEY.",
    )
    _add_api_options(p)
    p.add_argument("--pretty", action="store_true", help="indent the JSON for reading")
    p.add_argument("job_id", metavar="JOB_ID", help="the job's id (bmj_...)")
    p.set_defaults(handler="watcher.cli.jobs:show_job")


def _add_wait(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "wait",
        help="wait for a job to end; the exit code says how it went (for CI)",
        description="Poll one benchmark job until it ends, print what happens, then a summary. Exit codes: 0 "
        "completed and every threshold held, 1 the job failed, was cancelled or timed out, 2 usage error, 3 "
        "completed but a threshold was missed, 4 could not tell (not found, auth, API unreachable), 5 stalled "
        "(nothing moved for --stall-after), 124 --timeout elapsed, 130 Ctrl-C, 143 SIGTERM (the summary so far is "
        "printed and the JUnit file written). Without a job at a terminal, pick one of the running jobs. The key "
        "comes from $RUNLOOP_API_KEY. See docs/wait.md.",
    )
    _add_api_options(p)
    target = p.add_mutually_exclusive_group()
    target.add_argument("job_id", metavar="JOB_ID", nargs="?", help="the job's id (bmj_...)")
    target.add_argument("--name", help="find the job by its exact name instead")
    target.add_argument("--latest", action="store_true", help="the newest running job")
    p.add_argument("--interval", default=wait.DEFAULT_INTERVAL, help="time between polls (default: %(default)s)")
    p.add_argument(
        "--timeout",
        default=wait.DEFAULT_TIMEOUT,
        help="give up waiting after this long, exit 124; 0: never (default: %(default)s)",
    )
    p.add_argument(
        "--give-up-after",
        default=wait.DEFAULT_GIVE_UP_AFTER,
        help="exit 4 once every API call has failed for this long (default: %(default)s)",
    )
    p.add_argument(
        "--stall-after",
        default=wait.DEFAULT_STALL_AFTER,
        help="exit 5 once a running job has shown no change for this long; 0: never (default: %(default)s)",
    )
    p.add_argument("--min-score", type=float, metavar="X", help="every agent's average score must be at least X (0..1)")
    p.add_argument(
        "--max-failure-rate", type=float, metavar="F", help="(failed + timed out) / done must be at most F (0..1)"
    )
    p.add_argument("--json", action="store_true", help="events as JSON lines, then one JSON summary line")
    p.add_argument("--junit", type=Path, metavar="PATH", help="also write the scenario outcomes as JUnit XML")
    _add_wait_baseline(p)
    p.set_defaults(handler="watcher.cli.wait.command:wait_command")


def _add_wait_baseline(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("comparing with a baseline (docs/regressions.md)")
    group.add_argument(
        "--baseline",
        metavar="previous|JOB_ID",
        help="when the job completes, compare it with the last earlier completed job of its benchmark, or this job",
    )
    group.add_argument(
        "--max-regressions", type=_non_negative_int, metavar="N", help="exit 3 when more than N scenarios regressed"
    )
    group.add_argument(
        "--fail-on-significant-drop", action="store_true", help="exit 3 when an agent's score dropped significantly"
    )


def _add_compare(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "compare",
        help="compare a finished job with its baseline: regressions, fixes, the change and whether it is noise",
        description="Compare a job with BASELINE_JOB, or with its baseline: the last earlier completed job of the "
        "same benchmark. Per agent: scores, the change with a 95 %% interval, an exact McNemar test, regressed and "
        "fixed scenarios with links, and the trend. Exit 0 when compared, 4 when a job is not found or has no "
        "baseline. See docs/regressions.md.",
    )
    _add_api_options(p)
    p.add_argument("job_id", metavar="JOB", help="the job's id (bmj_...)")
    p.add_argument("baseline_job_id", metavar="BASELINE_JOB", nargs="?", help="compare with this job instead")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    p.add_argument(
        "--history", type=_non_negative_int, metavar="N", help="with --json: each agent's score over the last N jobs"
    )
    _add_state_options(p)
    p.set_defaults(handler="watcher.cli.compare:compare_command")


def _add_replay(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="turn recorded snapshots (JSON lines) into events (JSON lines)",
        description="Read JSON objects (lines, as `record`, `run --record` and `job` write them, or indented), "
        'each a BenchmarkJobView or {"at_ms", "job", "scenario_runs"}, diff them in order (several jobs may be '
        "interleaved) and print the events as JSON lines. The same file always gives the same output.",
    )
    p.add_argument("file", metavar="FILE", type=Path, help="the recorded snapshots")
    p.add_argument("--state", type=Path, help="SQLite file to keep the state in (default: in memory)")
    p.add_argument(
        "--config",
        type=Path,
        help="dry run: print the notifications this config would send (JSON lines) instead of the events; "
        "group windows and throttles run on the file's clock; nothing is sent",
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="with --config: instead of the notifications, print for each event what each rule decided, and why",
    )
    p.add_argument("--json", action="store_true", help="with --explain: one JSON object per event")
    p.set_defaults(handler="watcher.cli.replay:replay_command")


def _add_record(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "record",
        help="record jobs' snapshots as replay lines, until they finish or Ctrl-C",
        description="Poll jobs and write each change as a replay line (at_ms, job, scenario_runs) to --out, until "
        "every job has finished or Ctrl-C / SIGTERM; `benchwatch replay FILE` reads it. See docs/events.md.",
    )
    _add_api_options(p)
    p.add_argument("job_ids", metavar="JOB_ID", nargs="+", help="the jobs to record (bmj_...)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="the file to write (replaced)")
    p.add_argument("--interval", default="10s", help="time between polls (default: %(default)s)")
    p.set_defaults(handler="watcher.cli.record:record")


def _add_check(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check",
        help="validate a config file and say what each rule catches",
        description="Validate a config file: every problem is listed with its file, line and key. On success, "
        "print the notifiers (never their secrets), the rules and what each catches, and the silences.",
    )
    p.add_argument("config", metavar="CONFIG", type=Path, help="the YAML config file")
    p.set_defaults(handler="watcher.cli.check:check")


def _add_test(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "test",
        help="run rule unit tests: recorded snapshots through a config's rules, checked against what must be sent",
        description="Run each test of each FILE: its snapshots through its config's rules on the recording's "
        "clock, as replay does, then its checks (expect: what must be sent; expect_not: what must not, and why). "
        "Exit 0 when every check holds, 1 when one does not (with what was expected, what was sent and the "
        'decisions that led there), 2 when a test file cannot be used. See docs/rules.md, "Testing your rules".',
    )
    p.add_argument("files", metavar="FILE", type=Path, nargs="+", help="rule test files (YAML)")
    p.add_argument("--junit", type=Path, metavar="PATH", help="also write the results as JUnit XML")
    p.set_defaults(handler="watcher.cli.ruletest.command:test_command")


def _add_state_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="the config file (its state.path is used)")
    p.add_argument("--state", help="the state database (an SQLite file or a postgresql:// URL), instead of --config")


def _add_deliveries(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "deliveries",
        help="look into the outbox: pending, sent and dead-lettered notifications, their attempts; resend one",
        description="Inspect the notification outbox of a state database, and send dead letters again.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list notifications and where their delivery stands")
    _add_state_options(listing)
    listing.add_argument(
        "--status", choices=["pending", "sent", "dead", "all"], default="dead", help="which (default: %(default)s)"
    )
    listing.add_argument(
        "--limit", type=_non_negative_int, default=100, help="at most this many (default: %(default)s)"
    )
    listing.set_defaults(handler="watcher.cli.deliveries:list_deliveries")
    show = actions.add_parser("show", help="one notification and its attempt log (interrupted sends included)")
    _add_state_options(show)
    show.add_argument("id", metavar="ID", help="the notification id (nt_...), or a unique prefix of it")
    show.add_argument("--json", action="store_true", help="one JSON object, its attempts under `log`")
    show.set_defaults(handler="watcher.cli.deliveries:show_delivery")
    retry = actions.add_parser("retry", help="make a notification pending again (a running watcher sends it)")
    _add_state_options(retry)
    retry.add_argument("id", metavar="ID", help="the notification id (nt_...), or a unique prefix of it")
    retry.add_argument("--send", action="store_true", help="also send it now from here (needs --config)")
    retry.set_defaults(handler="watcher.cli.deliveries:retry_delivery")
    flush = actions.add_parser("flush", help="send everything due in the outbox now, then exit")
    flush.add_argument("--config", type=Path, required=True, help="the config file (notifiers and state)")
    flush.set_defaults(handler="watcher.cli.deliveries:flush_outbox")


def _add_explain(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "explain",
        help="why was an event told, or not: each rule's decision and its reason, as the watcher recorded it",
        description="For an event (ev_...) or each event of a notification (nt_...), print what every rule decided "
        "when it happened and why: not matched (which matcher saw what), silenced (by which silence), held in a "
        "group window, muted, inhibited (by which incident), once_per, sent (to whom, and the delivery). Read from "
        "the state database, never re-run with today's config. See docs/rules.md, \"Why wasn't I notified?\".",
    )
    _add_state_options(p)
    p.add_argument("id", metavar="ID", help="an event id (ev_...) or notification id (nt_...), or a unique prefix")
    p.add_argument("--json", action="store_true", help="a JSON array: each event with its rules' decisions")
    p.set_defaults(handler="watcher.cli.explain:explain")


def _add_silences(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "silences",
        help="add, list and expire runtime silences (applied from the next poll)",
        description="Runtime silences live in the state database beside the config file's silences; a running "
        'watcher applies them from its next poll. See docs/rules.md, "Runtime silences".',
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="silence matching events for a while; prints the new silence's id")
    add.add_argument("--config", type=Path, required=True, help="the config file (its state.path is used)")
    add.add_argument(
        "--match",
        action="append",
        required=True,
        metavar="KEY=VALUE",
        help='a matcher as in rules\' where: (glob, re:REGEX, or JSON such as 3 or {"lt": 0.5}); repeatable',
    )
    until = add.add_mutually_exclusive_group(required=True)
    until.add_argument("--for", dest="for_", metavar="DURATION", help="for this long from now (30m, 2h, 1d)")
    until.add_argument("--until", metavar="TIME", help="until this time, with a zone (2026-12-01T08:00:00Z)")
    add.add_argument("--comment", default="", help="why (shown on the status page and in the list)")
    add.add_argument("--by", help="who adds it, as `explain` names it (default: your login name)")
    add.set_defaults(handler="watcher.cli.silences:add")
    listing = actions.add_parser("list", help="list runtime silences, newest first")
    listing.add_argument("--config", type=Path, required=True, help="the config file (its state.path is used)")
    listing.add_argument("--json", action="store_true", help="as a JSON array")
    listing.set_defaults(handler="watcher.cli.silences:list_command")
    expire = actions.add_parser("expire", help="end a silence now")
    expire.add_argument("--config", type=Path, required=True, help="the config file (its state.path is used)")
    expire.add_argument("id", metavar="ID", help="the silence's id (sil_...)")
    expire.set_defaults(handler="watcher.cli.silences:expire")


def _add_test_notify(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "test-notify",
        help="send a sample notification through one notifier",
        description="Send a sample notification through one configured notifier, now, and report success or the "
        "exact error (classified as retryable or permanent).",
    )
    p.add_argument("config", metavar="CONFIG", type=Path, help="the YAML config file")
    p.add_argument("notifier", metavar="NOTIFIER", help="the notifier's name in the config")
    p.set_defaults(handler="watcher.cli.deliveries:test_notify")


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {raw}")
    return value


def _at_least_one(raw: str) -> float:
    value = float(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {raw}")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {raw}")
    return value


def _share(raw: str) -> float:
    value = float(raw)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {raw}")
    return value


def resolve_handler(target: str) -> Handler:
    """The coroutine function a subcommand names as `module:function`, imported now."""
    module, _, name = target.partition(":")
    handler: Handler = getattr(importlib.import_module(module), name)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `benchwatch` script; returns the exit code."""
    args = build_parser().parse_args(argv)
    # imported after parsing: `--help` and argument errors never pay for them
    import asyncio

    from watcher.cli.retry_status import configure_cli_logging

    if not getattr(args, "configures_logging", False):
        configure_cli_logging(verbose=args.verbose)
    try:
        return asyncio.run(resolve_handler(args.handler)(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # sorted by `_exit_code`, which re-raises what it does not know
        return _exit_code(exc)


def _exit_code(exc: Exception) -> int:
    """One readable line and the exit code for an error a command may end with; anything else is a bug: re-raised.

    The error types are imported here, once one is raised: the config loader's pulls in pydantic, which a command
    like `wait` loads only after its first request (docs/performance.md, "Start-up")."""
    from watcher.api.errors import RunloopApiError
    from watcher.cli.errors import UsageError
    from watcher.config.loader import ConfigError
    from watcher.store.errors import StoreError

    if isinstance(exc, RunloopApiError):
        return _fail(str(exc), EXIT_API)
    if isinstance(exc, UsageError | ValueError | StoreError):
        return _fail(str(exc), EXIT_USAGE)
    if isinstance(exc, ConfigError):
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}", EXIT_USAGE)
    raise exc


def _fail(message: str, code: int) -> int:
    from watcher.cli.retry_status import clear_status

    clear_status()  # the error replaces the retries' status line: said once
    print(f"benchwatch: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())

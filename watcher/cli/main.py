"""The `benchwatch` command line. Every error ends as one readable line on stderr and a non-zero exit code: 2 for a
usage error, 4 for the API's, 70 for a bug (its traceback with `--debug`) — see `watcher.cli.errors`."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from watcher.cli.errors import EXIT_API, EXIT_INTERRUPTED, EXIT_READER_GONE, EXIT_SOFTWARE, EXIT_USAGE
from watcher.cli.wait import defaults as wait

# Each command's module is imported only when that command runs: `benchwatch --help` and argument errors need
# argparse alone (aiohttp and pydantic cost most of a second; docs/performance.md, "Start-up").
Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
STATE_HELP = "the state (path or url): an SQLite file or a postgresql:// URL"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="benchwatch",
        description="Watch Runloop benchmark jobs and tell the right people what changed.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details (never secrets)")
    parser.add_argument("--debug", action="store_true", help="on an internal error (a bug), print its traceback")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_simulate(sub)
    _add_demo(sub)
    _add_jobs(sub)
    _add_job(sub)
    _add_wait(sub)
    _add_compare(sub)
    _add_digest(sub)
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
    p.add_argument("--state", help=f"{STATE_HELP} (default: the config's state:)")
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
    p.add_argument("job_id", metavar="JOB_ID", type=_job_id, help="the job's id (bmj_...)")
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
    target.add_argument("job_id", metavar="JOB_ID", nargs="?", type=_job_id, help="the job's id (bmj_...)")
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
    p.add_argument(
        "--summary-markdown",
        type=Path,
        metavar="FILE",
        help="also write the summary (and the comparison) as markdown; with $GITHUB_STEP_SUMMARY set, it is "
        "appended there too",
    )
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
    p.add_argument("job_id", metavar="JOB", type=_job_id, help="the job's id (bmj_...)")
    p.add_argument(
        "baseline_job_id", metavar="BASELINE_JOB", nargs="?", type=_job_id, help="compare with this job instead"
    )
    p.add_argument(
        "--format",
        choices=["text", "json", "markdown"],
        default="text",
        help="a table per agent, one JSON object, or markdown for a pull request comment (default: %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="the same as --format json")
    p.add_argument(
        "--history", type=_non_negative_int, metavar="N", help="with --json: each agent's score over the last N jobs"
    )
    p.add_argument(
        "--count-setup-failures",
        action="store_true",
        help="count scenarios that failed in setup as the agent's (by default they are listed apart)",
    )
    p.add_argument(
        "--min-effect",
        type=_effect,
        metavar="X",
        help="the drop in pass rate (0 < X < 1) to warn about when too few scenarios could show it (default: 0.05)",
    )
    _add_state_options(p)
    p.set_defaults(handler="watcher.cli.compare:compare_command")


def _add_digest(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "digest",
        help="print a digest now (the jobs that finished, scores, regressions, infra failures), without sending it",
        description="Print each digest of the config's `digests:` (or the one named) over the last --since, as it "
        "would be sent, without sending it or moving its schedule. With no digest configured, one over every job "
        "that finished. See docs/digests.md.",
    )
    p.add_argument("--config", type=Path, required=True, help="the config file (its state and digests)")
    p.add_argument("--since", default="24h", help="the period, ending now (default: %(default)s)")
    p.add_argument("--name", help="only the digest of this name")
    p.set_defaults(handler="watcher.cli.digest:digest_command")


def _add_replay(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="turn recorded snapshots (JSON lines) into events (JSON lines)",
        description="Read JSON objects (lines, as `record`, `run --record` and `job` write them, or indented), "
        'each a BenchmarkJobView or {"at_ms", "job", "scenario_runs"}, diff them in order (several jobs may be '
        "interleaved) and print the events as JSON lines. The same file always gives the same output.",
    )
    p.add_argument("file", metavar="FILE", type=Path, help="the recorded snapshots")
    p.add_argument(
        "--state", help=f"{STATE_HELP} to keep the replay's state in (default: in memory, never the config's)"
    )
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
    p.add_argument("job_ids", metavar="JOB_ID", nargs="+", type=_job_id, help="the jobs to record (bmj_...)")
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
    _add_config_positional(p)
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
    p.add_argument("--config", type=Path, help="the config file (its state: is used)")
    p.add_argument("--state", help=f"{STATE_HELP}, instead of the config's")


def _add_config_positional(p: argparse.ArgumentParser) -> None:
    """CONFIG as a positional (as it always was) or as `--config`, like every other command."""
    p.add_argument("config_file", metavar="CONFIG", type=Path, nargs="?", help="the YAML config file (or --config)")
    p.add_argument("--config", type=Path, help="the YAML config file")


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
    retry.add_argument("--force", action="store_true", help="also a notification already sent: it is sent again")
    retry.set_defaults(handler="watcher.cli.deliveries:retry_delivery")
    flush = actions.add_parser("flush", help="send everything due in the outbox now, then exit")
    flush.add_argument("--config", type=Path, required=True, help="the config file (notifiers and state)")
    flush.add_argument("--state", help=f"{STATE_HELP}, instead of the config's")
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
    _add_state_options(add)
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
    _add_state_options(listing)
    listing.add_argument("--json", action="store_true", help="as a JSON array")
    listing.set_defaults(handler="watcher.cli.silences:list_command")
    expire = actions.add_parser("expire", help="end a silence now")
    _add_state_options(expire)
    expire.add_argument("id", metavar="ID", help="the silence's id (sil_...)")
    expire.set_defaults(handler="watcher.cli.silences:expire")


def _add_test_notify(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "test-notify",
        help="send a sample notification through one notifier",
        description="Send a sample notification through one configured notifier, now, and report success or the "
        "exact error (classified as retryable or permanent).",
    )
    _add_config_positional(p)
    p.add_argument("notifier", metavar="NOTIFIER", help="the notifier's name in the config")
    p.add_argument("--state", help=f"{STATE_HELP}, instead of the config's (notifiers keep some state: threads)")
    p.set_defaults(handler="watcher.cli.deliveries:test_notify")


def _job_id(raw: str) -> str:
    if not raw.strip():
        raise argparse.ArgumentTypeError("a job id cannot be empty")
    return raw


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


MAX_COUNT = 1_000_000_000  # a count past this is a typo; 10**23 overflowed SQLite's integers (a traceback)


def _non_negative_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
    if not 0 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_COUNT}, got {raw}")
    return value


def _share(raw: str) -> float:
    value = float(raw)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {raw}")
    return value


def _effect(raw: str) -> float:
    value = float(raw)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (a 5-point drop is 0.05), got {raw}")
    return value


def resolve_handler(target: str) -> Handler:
    """The coroutine function a subcommand names as `module:function`, imported now."""
    module, _, name = target.partition(":")
    handler: Handler = getattr(importlib.import_module(module), name)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `benchwatch` script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except BrokenPipeError:  # `benchwatch --help | head -1`
        return _reader_gone()
    # imported after parsing: `--help` and argument errors never pay for them
    import asyncio

    from watcher.cli.retry_status import configure_cli_logging

    if not getattr(args, "configures_logging", False):
        configure_cli_logging(verbose=args.verbose)
    try:
        code = asyncio.run(resolve_handler(args.handler)(args))
        sys.stdout.flush()  # what is still buffered meets a reader that left here, not at the interpreter's exit
        return code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError as exc:
        return _reader_gone() if _stdout_closed() else _exit_code(exc, debug=args.debug)
    except Exception as exc:  # the one boundary: every error a command ends with is told here
        return _exit_code(exc, debug=args.debug)


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (`| head -1` read its line and exited): poll says POLLERR.
    A broken pipe elsewhere (a socket) is an error like any other."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)
        return any(mask & select.POLLERR for _, mask in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no real file (tests' StringIO), or no poll on this platform
        return False


def _reader_gone() -> int:
    """Exit quietly, as `git log | head -1` does: nothing on stderr, and the status of a process ended by SIGPIPE.
    Stdout points at /dev/null from here, so the interpreter's last flush has nowhere to fail."""
    import os

    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_READER_GONE


def _exit_code(exc: Exception, *, debug: bool) -> int:
    """One readable line (or one per config problem) and the exit code for an error a command ended with."""
    from watcher.api.errors import RunloopApiError
    from watcher.cli.errors import bug_line, one_line, usage_lines

    if isinstance(exc, RunloopApiError):
        return _fail([f"benchwatch: error: {one_line(exc)}"], EXIT_API)
    lines = usage_lines(exc)
    if lines is not None:
        return _fail(lines, EXIT_USAGE)
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    return _fail([bug_line(exc)], EXIT_SOFTWARE)


def _fail(lines: list[str], code: int) -> int:
    from watcher.cli.retry_status import clear_status
    from watcher.core.printable import printable

    clear_status()  # the error replaces the retries' status line: said once
    for line in lines:
        print(printable(line), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())

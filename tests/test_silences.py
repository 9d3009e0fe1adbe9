"""Runtime silences: the CLI, matcher validation shared with the rules, the store as the one copy every replica
reads, and the running watcher applying them from the next poll."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path

import pytest

from rules.config import RuleConfig
from rules.engine import Router, RuleState
from rules.silences import NAMESPACE, matcher_json, parse_match_args
from tests.conftest import Backend
from tests.loopprobe import CountingThreadsafe
from tests.running import running_service
from tests.waiting import until
from watcher.cli.main import main
from watcher.core.clock import ManualClock
from watcher.core.events import JobStalled
from watcher.core.records import StateRow
from watcher.pipeline.silences import SilenceError, add_silence, request_from_args, request_from_json
from watcher.pipeline.tracker import JobTracker
from watcher.simulator import SimAgent, SimJobSpec, Simulator
from watcher.store.postgres import PostgresStore
from watcher.store.sqlite import SQLiteStore

HOUR_MS = 3_600_000


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "benchwatch.yaml"
    path.write_text("watch: {jobs: [bmj_a]}\nstate: {path: ./state.db}\n")
    return path


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_cli_adds_lists_and_expires_a_silence(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, "silences", "add", "--config", str(config), "--match", "job_name=nightly-*",
                        "--match", 'score={"lt": 0.5}', "--for", "2h", "--comment", "flaky infra",
                        "--by", "alice")  # fmt: skip
    assert code == 0
    silence_id = out.strip()
    assert re.fullmatch(r"sil_[0-9a-f]{12}", silence_id)

    code, out, _ = _cli(capsys, "silences", "list", "--config", str(config))
    assert code == 0
    assert f"{silence_id}  active" in out and 'job_name=nightly-* score={"lt": 0.5}  # flaky infra (by alice)' in out

    assert _cli(capsys, "silences", "expire", "--config", str(config), silence_id)[0] == 0
    code, out, _ = _cli(capsys, "silences", "list", "--config", str(config), "--json")
    [listed] = json.loads(out)
    assert listed["id"] == silence_id and listed["state"] == "expired" and listed["expired_by_hand"] is True
    assert listed["created_by"] == "alice"  # `explain` names who silenced what
    assert listed["match"] == {"job_name": "nightly-*", "score": {"lt": 0.5}}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--match", "job_name", "--for", "1h"], "match: 'job_name': expected KEY=VALUE"),
        (["--match", "job_name=re:(", "--for", "1h"], "invalid regular expression"),
        (["--match", "a..b=x", "--for", "1h"], "invalid field path 'a..b'"),
        (["--match", "a=1", "--match", "a=2", "--for", "1h"], "a is matched twice"),
        (["--match", "a=x", "--for", "soon"], "for: expected a duration"),
        (["--match", "a=x", "--until", "2020-01-01T00:00:00Z"], "would end before it starts"),
        (["--match", "a=x", "--until", "tomorrow"], "until: expected a time"),
    ],
)
def test_a_bad_silence_is_one_line_and_exit_2(
    config: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = _cli(capsys, "silences", "add", "--config", str(config), *args)

    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


def test_expiring_an_unknown_silence_says_so(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, "silences", "expire", "--config", str(config), "sil_000000000000")

    assert code == 2
    assert "no silence 'sil_000000000000'" in err


def test_matchers_are_the_rules_matchers() -> None:
    words = ["job_name=nightly-*", "agent_name=re:^claude", "attempt=2", "state=on", 'score={"ge": 0.9}']
    matchers = parse_match_args(words)
    rule = RuleConfig.model_validate(
        {"name": "r", "on": "*", "notify": "x", "where": {"job_name": "nightly-*", "agent_name": "re:^claude",
                                                          "attempt": 2, "state": "on", "score": {"ge": 0.9}}}
    )  # fmt: skip

    assert {path: m.raw for path, m in matchers.items()} == {path: m.raw for path, m in rule.where.items()}
    assert matchers["state"].raw == "on"  # JSON, not YAML: `on` stays a string


def _stall(job_id: str, at_ms: int) -> JobStalled:
    return JobStalled.model_validate(
        {"id": f"ev_{job_id}", "job_id": job_id, "job_name": f"name-{job_id}", "at_ms": at_ms,
         "stalled_for_ms": HOUR_MS, "last_change_ms": 0, "n_done": 0, "n_expected": 4, "state": "running"}
    )  # fmt: skip


async def test_every_replica_applies_a_silence_another_one_added(tmp_path: Path) -> None:
    rules = [RuleConfig.model_validate({"name": "stalls", "on": "job.stalled", "notify": "hook"})]
    async with SQLiteStore(tmp_path / "state.db") as one, SQLiteStore(tmp_path / "state.db") as other:
        request = request_from_args(["job_id=bmj_a"], now_ms=1_000, for_="1h", until=None, comment="")
        await add_silence(one, request, now_ms=1_000)
        replica = JobTracker(other, router=Router(rules))
        await replica.refresh_silences()
        assert replica.router is not None

        routed = replica.router.route(RuleState(), [_stall("bmj_a", 2_000), _stall("bmj_b", 2_000)], None, 2_000)
        after = replica.router.route(RuleState(), [_stall("bmj_a", HOUR_MS + 1_000)], None, HOUR_MS + 1_000)

    assert routed.silenced == 1
    assert [n.events[0].job_id for n in routed.notifications] == ["bmj_b"]
    assert after.silenced == 0 and len(after.notifications) == 1  # ended an hour after it was added


def _date_back(path: Path, seconds: int) -> None:
    """Date the database's files back: their stamp is a mark of the store only once settled (`SETTLED_NS`)."""
    then = time.time_ns() - seconds * 1_000_000_000
    for name in (path, Path(f"{path}-wal")):
        if name.exists():
            os.utime(name, ns=(then, then))


async def test_the_store_mark_holds_while_nothing_is_committed_and_moves_with_any_commit(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as mine, SQLiteStore(path) as cli:
        assert (
            mine.write_mark(NAMESPACE) is None
        )  # the files were just written: their stamp may not move at the next write
        _date_back(path, 10)
        mark = mine.write_mark(NAMESPACE)
        assert mark is not None and mine.write_mark(NAMESPACE) == mark
        await add_silence(cli, request_from_args(["job_id=bmj_a"], now_ms=1_000, for_="1h", until=None, comment=""),
                          now_ms=1_000)  # fmt: skip
        assert mine.write_mark(NAMESPACE) is None  # fresh again
        _date_back(path, 5)
        assert mine.write_mark(NAMESPACE) not in (None, mark)
    assert SQLiteStore(":memory:").write_mark(NAMESPACE) is None  # no files to tell by


async def test_a_watcher_at_rest_reads_the_silences_again_only_after_a_commit(tmp_path: Path) -> None:
    """At every cycle the runtime silences were read on the store's thread, nothing having changed: a hop to the
    thread and back (the loop reached through `call_soon_threadsafe`) every second of a watcher at rest."""
    path = tmp_path / "state.db"
    rules = [RuleConfig.model_validate({"name": "stalls", "on": "job.stalled", "notify": "hook"})]
    async with SQLiteStore(path) as mine, SQLiteStore(path) as cli:
        tracker = JobTracker(mine, router=Router(rules))
        _date_back(path, 10)
        await tracker.refresh_silences()
        with CountingThreadsafe(asyncio.get_running_loop()) as hops:
            await tracker.refresh_silences()
            await tracker.refresh_silences()
        assert hops.calls == 0
        request = request_from_args(["job_id=bmj_a"], now_ms=1_000, for_="1h", until=None, comment="")
        added = await add_silence(cli, request, now_ms=1_000)  # another process's commit: `benchwatch silences add`
        await tracker.refresh_silences()
        assert tracker.router is not None
        assert [silence.id for silence in tracker.router.runtime_silences] == [added.id]


@pytest.mark.slow
async def test_replicas_read_the_silences_again_only_when_an_added_one_is_announced(
    postgres_database: str, tmp_path: Path
) -> None:
    """On PostgreSQL the runtime silences were read at every cycle of every replica: a transaction a second each,
    a sixth of three replicas' transactions beyond one replica's on `ha` large."""
    url = Backend("postgres", tmp_path, postgres_database).location()
    rules = [RuleConfig.model_validate({"name": "stalls", "on": "job.stalled", "notify": "hook"})]
    mine, cli = PostgresStore(url), PostgresStore(url)
    await mine.open()
    await cli.open()
    listener: asyncio.Task[None] | None = None
    try:
        tracker = JobTracker(mine, router=Router(rules))
        assert mine.write_mark(NAMESPACE) is None  # not listening: nothing tells it of a change but a read
        listener = asyncio.create_task(mine.listen(lambda: None))
        await until(lambda: mine.write_mark(NAMESPACE) is not None)
        await tracker.refresh_silences()
        reads: list[str] = []
        load_rows = mine.load_state_rows

        async def counted(namespace: str) -> list[StateRow]:
            reads.append(namespace)
            return await load_rows(namespace)

        mine.load_state_rows = counted  # type: ignore[method-assign]  # counts the reads; the store answers
        await tracker.refresh_silences()
        await tracker.refresh_silences()
        assert reads == []  # at rest: no read
        request = request_from_args(["job_id=bmj_a"], now_ms=1_000, for_="1h", until=None, comment="")
        # Read before the add: its announcement may be heard before `add_silence` returns here (the listener's task
        # runs while the add's connection goes back to the pool), and a mark read after it would never move again.
        mark = mine.write_mark(NAMESPACE)
        added = await add_silence(cli, request, now_ms=1_000)  # `benchwatch silences add`, or another replica's API
        await until(lambda: mine.write_mark(NAMESPACE) != mark)
        await tracker.refresh_silences()
        assert reads == [NAMESPACE] and tracker.router is not None
        assert [silence.id for silence in tracker.router.runtime_silences] == [added.id]
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        assert mine.write_mark(NAMESPACE) is None  # no longer listening: read at every cycle again
        await tracker.refresh_silences()
        assert reads == [NAMESPACE, NAMESPACE]
    finally:
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        await mine.close()
        await cli.close()


AGENTS = [SimAgent(name="a", pass_rate=0.5)]
SPECS = [
    SimJobSpec(name=name, n_scenarios=8, agents=AGENTS, init_s=0, queue_s=0, scenario_duration_s=(60, 600))
    for name in ("quiet-please", "keep-telling")
]


async def test_the_watcher_applies_a_new_silence_from_the_next_poll(tmp_path: Path) -> None:
    clock = ManualClock()
    sim = Simulator(seed=5, clock=clock)
    for spec in SPECS:
        sim.add_job(spec)
    async with running_service(tmp_path, sim, clock) as running:
        request = request_from_args(["job_name=quiet-*"], now_ms=clock.now_ms(), for_="1h", until=None, comment="")
        await add_silence(running.service.store, request, clock.now_ms())
        before = len(running.hook.requests)
        for _ in range(3):
            await running.poll(advance_ms=120_000)
        await running.service.worker.drain()

    told = {event["job_name"] for d in running.hook.deliveries[before:] for event in d.payload["events"]}
    assert told == {"keep-telling"}


def test_a_catastrophic_pattern_matches_a_hostile_name_in_linear_time(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With Python's `re`, `re:(a+)+$` against 40 a's and a `!` took minutes, the event loop frozen all along."""
    matcher = parse_match_args(["job_name=re:(a+)+$"])["job_name"]
    hostile = "a" * 40 + "!"
    started = time.monotonic()
    assert not matcher.test(hostile) and matcher.test("a" * 40)
    assert time.monotonic() - started < 0.5
    code, _, err = _cli(capsys, "silences", "add", "--config", str(config), "--match", r"job_name=re:(a)\1",
                        "--for", "1h")  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "invalid regular expression '(a)\\\\1': invalid escape" in err


NOW_MS = 1_788_228_000_000


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1, 2], "expected a JSON object"),
        ("job_name=x", "expected a JSON object"),
        ({"matchers": ["job_name=x"], "for": "1h", "by": "me", "at": 1}, "unknown field 'at'"),
        ({"matchers": ["job_name=x"], "for": "1h", "comment": 3}, "comment: expected a string"),
        ({"matchers": ["job_name=x"], "for": 60}, "for: expected a string"),
        ({"matchers": ["job_name=x"], "until": ["tomorrow"]}, "until: expected a string"),
        ({"for": "1h"}, "matchers: expected KEY=VALUE strings"),
        ({"matchers": [1], "for": "1h"}, "matchers: expected KEY=VALUE strings"),
        ({"matchers": ["a=1"], "match": {"a": 1}, "for": "1h"}, "give match (an object) or matchers"),
        ({"match": {}, "for": "1h"}, "match: give at least one matcher"),
        ({"match": {"score": {"lt": "low"}}, "for": "1h"}, "match: "),
        ({"matchers": "job_name=x", "for": "", "until": ""}, "give exactly one of for"),  # empty: not given
    ],
)
def test_a_json_silence_request_is_refused_in_one_line_saying_why(body: object, message: str) -> None:
    with pytest.raises(SilenceError) as refused:
        request_from_json(body, now_ms=NOW_MS)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_a_json_silence_request_takes_matchers_as_a_list_or_one_string_or_match_as_an_object() -> None:
    as_list = request_from_json({"matchers": ["job_name=x", "attempt=2"], "for": "2h"}, now_ms=NOW_MS)
    as_text = request_from_json({"matchers": "job_name=x attempt=2", "for": "2h", "comment": None}, now_ms=NOW_MS)
    as_object = request_from_json({"match": {"job_name": "x", "attempt": 2}, "for": "2h"}, now_ms=NOW_MS)
    seen = {json.dumps([matcher_json(r.match), r.ends_ms, r.comment]) for r in (as_list, as_text, as_object)}
    assert seen == {json.dumps([{"job_name": "x", "attempt": 2}, NOW_MS + 2 * HOUR_MS, ""])}

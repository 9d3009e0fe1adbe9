"""Replicas sharing the work on PostgreSQL: job leases with epochs, a fair share each, the rule-timer claim.

A lease row (job id, holder, epoch) says which replica polls a job. A lease lives as long as its holder does: a
heartbeat renews the replica's own row in `replicas` (one row, however many leases it holds), and a lease whose
holder has not renewed within the TTL has expired. Each heartbeat a replica renews itself and takes its share of
the free or expired leases; when a new replica appears, the others let go of what exceeds their share (evened out
only past a tenth: `_slack`), and it takes that on its next heartbeat. Taking a lease moves its epoch on: a commit
that carries an older epoch is refused (fencing), so a replica that was paused past its lease cannot write stale
memories. Reallocation runs under a transaction-level advisory lock, one replica at a time.

Every time a lease or claim is written or compared with is the database's clock (`NOW`), not the replica's: with
each replica's own clock, one running 90 s ahead saw the others' leases and claims expire early and took them,
and a quarter to a half of the notifications went out twice. A caller may pass its own `now_ms` instead — tests
that move a manual clock do (`PostgresStore(caller_clock=True)`); None means the database's clock.

A job that came to rest keeps its row, marked `resting`, for good: it counts in no share and is never taken, and
a replica whose memory of it is stale (it last saw the job running) learns from the row that it rests, instead of
adding the job back — without the mark, finished jobs bounced between replicas, each polling them again, and the
shares moved under the live jobs (a job taken over was let go of again as excess, and its poll waited a cycle).

Renewing each lease row instead (an expiry per lease) wrote every held lease at every heartbeat: 2.4 million row
versions in an 18-minute `ha` run (its first pass leases 10,000 jobs). Where vacuum lags, or is off as on the CI
machines' server, the table grew to 3,726 pages for 10,000 rows, the planner took its 167 live leases for 137,000,
and the heartbeat's counts became parallel scans of 0.8–1.2 s, long enough for heartbeats and cycles to be skipped.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any, Final

import psycopg
from psycopg import AsyncCursor, AsyncPipeline

from watcher.store.pgschema import LEASE_LOCK_KEY

RULE_TIMERS: Final = "rule-timers"
# The time of a lease or a claim: the caller's (`%(now)s`, tests) or the database's clock at this statement.
NOW: Final = "COALESCE(%(now)s::bigint, (extract(epoch FROM statement_timestamp()) * 1000)::bigint)"
# The replicas that renewed themselves within the TTL: their leases are live, every other holder's have expired.
LIVE: Final = f"SELECT holder FROM replicas WHERE seen_ms > {NOW} - %(ttl)s"
# A lease any replica may take: nobody's, or its holder's renewal is older than the TTL (`holder` is never NULL).
FREE: Final = f"NOT resting AND (holder = '' OR holder NOT IN ({LIVE}))"

Conn = psycopg.AsyncConnection[Any]


async def hold(
    conn: Conn,
    pipeline: AsyncPipeline,
    holder: str,
    job_ids: Collection[str],
    *,
    now_ms: int | None,
    ttl_ms: int,
    rested: Collection[str],
) -> tuple[dict[str, int], frozenset[str], AsyncCursor[Any] | None]:
    """In the caller's transaction (`pgtx.one_transaction`, its `pipeline`): mark the jobs `rested` (seen to come to
    rest) as resting, renew this replica (and with it every lease it holds), let go of jobs no longer wanted or
    beyond the share, take the share; returns the leases held (job id → epoch), those of `job_ids` that rest
    (another replica saw them come to rest: nobody polls them again), and the leases being taken: a cursor whose
    rows (`taken`) the caller reads once the transaction is sent. `now_ms` None: the database's clock.

    One round trip for all but the rebalancing step, which depends on the share: that step is queued and goes out
    with what the caller queues after it, and its COMMIT."""
    wanted = sorted(job_ids)
    times = {"now": now_ms, "ttl": ttl_ms, "holder": holder}
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LEASE_LOCK_KEY,))
    await conn.execute(
        f"INSERT INTO replicas (holder, seen_ms) VALUES (%(holder)s, {NOW})"
        " ON CONFLICT (holder) DO UPDATE SET seen_ms = excluded.seen_ms".encode(),
        times,
    )
    if rested:  # kept, marked: a replica whose memory of the job is stale must not lease it again
        await conn.execute(
            "INSERT INTO job_leases (job_id, holder, epoch, resting)"
            " SELECT unnest(%s::text[]), '', 0, true"
            " ON CONFLICT (job_id) DO UPDATE SET holder = '', resting = true",
            (sorted(rested),),
        )
    # The wanted ids sent once (10,000 on a first pass over many jobs): let go of the leases no longer wanted
    # (NOT IN: a hashed anti-join, not a scan of the array per row), add rows for the new ones, and read which
    # of them rest. The two writes touch disjoint rows; the statements after this one see both.
    resting_rows = await conn.execute(
        "WITH wanted AS (SELECT unnest(%(wanted)s::text[]) AS job_id),"
        " gone AS (DELETE FROM job_leases WHERE holder = %(holder)s AND NOT resting"
        " AND job_id NOT IN (SELECT job_id FROM wanted)),"
        " added AS (INSERT INTO job_leases (job_id, holder, epoch)"
        " SELECT job_id, '', 0 FROM wanted ON CONFLICT (job_id) DO NOTHING)"
        " SELECT job_id FROM job_leases WHERE resting AND job_id IN (SELECT job_id FROM wanted)",
        {"wanted": wanted, "holder": holder},
    )
    mine_rows = await conn.execute(  # renewed with this replica's row above: read, not written
        b"SELECT job_id, epoch FROM job_leases WHERE holder = %(holder)s AND NOT resting", times
    )
    share_row = await conn.execute(  # how many leases are free or expired (none: nothing to take), and how
        # few the live replica holding the fewest holds (a newcomer: none), counted on the holder index
        "SELECT (SELECT count(*) FROM job_leases WHERE NOT resting),"
        f" (SELECT count(*) FROM ({LIVE}) AS live),"
        f" (SELECT count(*) FROM job_leases WHERE {FREE}),"
        " (SELECT min((SELECT count(*) FROM job_leases WHERE holder = live.holder AND NOT resting))"
        f" FROM ({LIVE}) AS live)".encode(),
        times,
    )
    await pipeline.sync()
    resting = frozenset(str(row[0]) for row in await resting_rows.fetchall())
    mine = {str(row[0]): int(row[1]) for row in await mine_rows.fetchall()}
    counts = await share_row.fetchone()
    share = _share(counts)
    least = int(counts[3]) if counts and counts[3] is not None else share  # unknown: no replica short
    slack = _slack(share)
    if len(mine) > share and (len(mine) > share + slack or least < share - slack):
        excess = sorted(mine)[share:]
        await conn.execute("UPDATE job_leases SET holder = '' WHERE holder = %s AND job_id = ANY(%s)", (holder, excess))
        return {job_id: epoch for job_id, epoch in mine.items() if job_id not in excess}, resting, None
    if len(mine) < share and counts and counts[2]:  # (200 jobs, 3 replicas: one holds 66 of a share of 67)
        taking = await conn.execute(
            "UPDATE job_leases SET holder = %(holder)s, epoch = epoch + 1 WHERE job_id IN ("
            f" SELECT job_id FROM job_leases WHERE {FREE} ORDER BY job_id LIMIT %(n)s"
            " FOR UPDATE SKIP LOCKED) RETURNING job_id, epoch".encode(),
            {**times, "n": share - len(mine)},
        )
        return mine, resting, taking
    return mine, resting, None


async def taken(taking: AsyncCursor[Any] | None) -> dict[str, int]:
    """The leases `hold` took (job id → epoch), read once its transaction was sent."""
    return {} if taking is None else {str(row[0]): int(row[1]) for row in await taking.fetchall()}


def _share(counts: tuple[Any, ...] | None) -> int:
    """Leases per live replica, rounded up: every job has a holder even when they do not divide evenly."""
    jobs, replicas = (int(counts[0]), max(1, int(counts[1]))) if counts else (0, 1)
    return math.ceil(jobs / replicas)


def _slack(share: int) -> int:
    """How far from its share a replica's leases may be before the shares are evened out again (a tenth of the
    share, rounded down): a replica above its share lets go of the excess only once it holds more than share +
    slack, or another live replica holds fewer than share − slack (a newcomer, which holds none). Jobs that come to
    rest shrink the shares one at a time, and evening them out to the job moved a lease every second or third time
    — a reload of the job's memory and a full poll at the replica that took it (2 to 10 per changed window on
    `ha`'s workloads)."""
    return share // 10


async def fence(conn: Conn, holder: str, job_id: str, epoch: int) -> None:
    """Inside a commit: fail the transaction unless this replica still holds the job's lease at `epoch`
    (`benchwatch_fence` raises `LEASE_LOST_SQLSTATE`). Nothing is read back, so in a pipeline the fence goes out with
    the commit's writes and its COMMIT in one round trip. The row stays locked FOR KEY SHARE to the commit's end: a
    takeover, which locks the rows it takes FOR UPDATE (SKIP LOCKED), cannot slip in between — while the holder's
    own heartbeat, which writes no lease row to renew it and lets one go with a plain UPDATE of non-key columns, does
    not wait for its commits: a heartbeat never queues behind a poll's commit."""
    await conn.execute("SELECT benchwatch_fence(%s, %s, %s)", (holder, job_id, epoch))


async def claim(conn: Conn, name: str, holder: str, now_ms: int | None, ttl_ms: int) -> AsyncCursor[Any]:
    """Take or renew the claim `name` if it is free, expired or already ours (`now_ms` None: the database's clock);
    the cursor's one row (the claim's epoch) says it was, no row that another replica holds it. The caller fetches
    it: in a pipeline, once the round trip is done."""
    return await conn.execute(
        f"INSERT INTO claims (name, holder, epoch, expires_ms) VALUES (%(name)s, %(holder)s, 1, {NOW} + %(ttl)s)"
        " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms,"
        " epoch = claims.epoch + CASE WHEN claims.holder = excluded.holder THEN 0 ELSE 1 END"
        f" WHERE claims.holder = excluded.holder OR claims.expires_ms <= {NOW} RETURNING epoch".encode(),
        {"name": name, "holder": holder, "now": now_ms, "ttl": ttl_ms},
    )


async def release_all(conn: Conn, holder: str) -> None:
    """A replica stopping in order: its leases, claims and outbox claims are free at once, not after their TTL."""
    await conn.execute("UPDATE job_leases SET holder = '' WHERE holder = %s", (holder,))
    await conn.execute("DELETE FROM claims WHERE holder = %s", (holder,))
    await conn.execute("DELETE FROM replicas WHERE holder = %s", (holder,))
    await conn.execute(
        "UPDATE outbox SET claimed_by = NULL, claim_expires_ms = 0 WHERE claimed_by = %s AND status = 'pending'",
        (holder,),
    )


async def renew_outbox_claims(conn: Conn, holder: str, now_ms: int | None, ttl_ms: int) -> None:
    """Sends in flight keep their claims while the replica lives (a slow send is not taken over)."""
    await conn.execute(
        f"UPDATE outbox SET claim_expires_ms = {NOW} + %(ttl)s"
        " WHERE claimed_by = %(holder)s AND status = 'pending'".encode(),
        {"now": now_ms, "ttl": ttl_ms, "holder": holder},
    )

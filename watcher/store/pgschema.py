"""The PostgreSQL schema, as versioned migrations applied at start under an advisory lock.

Each entry moves the schema one version up; never edit a released one, append another.
"""

from __future__ import annotations

from typing import Final

# The key of the advisory lock that serialises migrations of concurrently starting replicas ("benchwat").
MIGRATION_LOCK_KEY: Final = 0x62656E6368776174

MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE jobs (
        job_id      TEXT PRIMARY KEY,
        memory      TEXT NOT NULL,
        updated_ms  BIGINT NOT NULL
    );
    CREATE TABLE events (
        seq     BIGSERIAL PRIMARY KEY,
        id      TEXT NOT NULL UNIQUE,
        job_id  TEXT NOT NULL,
        kind    TEXT NOT NULL,
        at_ms   BIGINT NOT NULL,
        body    TEXT NOT NULL
    );
    CREATE INDEX events_by_job ON events (job_id, seq);
    CREATE TABLE state_rows (
        namespace   TEXT NOT NULL,
        key         TEXT NOT NULL,
        body        TEXT NOT NULL,
        PRIMARY KEY (namespace, key)
    );
    CREATE TABLE outbox (
        id               TEXT PRIMARY KEY,
        notifier         TEXT NOT NULL,
        rule             TEXT NOT NULL,
        created_ms       BIGINT NOT NULL,
        body             TEXT NOT NULL,
        status           TEXT NOT NULL DEFAULT 'pending',
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms  BIGINT NOT NULL DEFAULT 0,
        last_reason      TEXT,
        last_error       TEXT,
        done_ms          BIGINT
    );
    CREATE INDEX outbox_by_status ON outbox (status, created_ms);
    CREATE INDEX outbox_due ON outbox (status, next_attempt_ms);
    CREATE TABLE deliveries (
        seq              BIGSERIAL PRIMARY KEY,
        notification_id  TEXT NOT NULL,
        notifier         TEXT NOT NULL,
        attempt          INTEGER NOT NULL,
        started_ms       BIGINT NOT NULL,
        finished_ms      BIGINT NOT NULL,
        outcome          TEXT NOT NULL,
        reason           TEXT,
        error            TEXT
    );
    CREATE INDEX deliveries_by_notification ON deliveries (notification_id, seq)
    """,
    """
    CREATE TABLE job_leases (
        job_id      TEXT PRIMARY KEY,
        holder      TEXT NOT NULL,
        epoch       BIGINT NOT NULL,
        expires_ms  BIGINT NOT NULL
    );
    CREATE INDEX job_leases_by_holder ON job_leases (holder);
    CREATE TABLE replicas (
        holder   TEXT PRIMARY KEY,
        seen_ms  BIGINT NOT NULL
    );
    CREATE TABLE claims (
        name        TEXT PRIMARY KEY,
        holder      TEXT NOT NULL,
        epoch       BIGINT NOT NULL,
        expires_ms  BIGINT NOT NULL
    );
    ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
    ALTER TABLE outbox ADD COLUMN claim_expires_ms BIGINT NOT NULL DEFAULT 0
    """,
    # A job that came to rest keeps its lease row, marked: no replica re-adds it, counts it in a share or takes it.
    """
    ALTER TABLE job_leases ADD COLUMN resting BOOLEAN NOT NULL DEFAULT false;
    CREATE INDEX job_leases_live ON job_leases (expires_ms, job_id) WHERE NOT resting
    """,
    # What routing decided for each event and rule (`watcher.core.decisions`): one row per event and commit; the
    # HTTP status of each failed delivery attempt and the job of each notification (for the delivery log).
    """
    CREATE TABLE decisions (
        seq       BIGSERIAL PRIMARY KEY,
        event_id  TEXT NOT NULL,
        at_ms     BIGINT NOT NULL,
        body      TEXT NOT NULL
    );
    CREATE INDEX decisions_by_event ON decisions (event_id, seq);
    ALTER TABLE deliveries ADD COLUMN http_status INTEGER;
    ALTER TABLE outbox ADD COLUMN job_id TEXT;
    UPDATE outbox SET job_id = body::jsonb -> 'events' -> 0 ->> 'job_id';
    CREATE INDEX outbox_by_job ON outbox (job_id, created_ms)
    """,
    # Renewals stay on their page (HOT updates): no index holds `expires_ms`, and pages keep room. With it indexed,
    # every heartbeat's renewal left a dead row and a dead index entry per lease: after 300 heartbeats of 200 jobs
    # among 10,000, 53,600 dead rows, and the live-lease index returned 10,000 entries for 200 live leases.
    """
    DROP INDEX job_leases_live;
    CREATE INDEX job_leases_live ON job_leases (job_id) WHERE NOT resting;
    ALTER TABLE job_leases SET (fillfactor = 50)
    """,
    # A lease lives as long as its holder's row in `replicas` is renewed (`pgleases`): no expiry per lease, so a
    # heartbeat writes one row, not one per lease held.
    """
    ALTER TABLE job_leases DROP COLUMN expires_ms
    """,
    # The fence of a poll's commit (`pgleases.fence`) as a statement that fails the transaction when this replica no
    # longer holds the job's lease at its epoch: it goes out in the commit's one round trip with the writes and the
    # COMMIT, where a fence whose answer the client had to read first cost a round trip of its own. The lease row
    # stays locked FOR KEY SHARE to the commit's end, as before.
    """
    CREATE FUNCTION benchwatch_fence(fence_holder TEXT, fence_job TEXT, fence_epoch BIGINT) RETURNS void
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM 1 FROM job_leases
            WHERE job_id = fence_job AND holder = fence_holder AND epoch = fence_epoch FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'this replica no longer holds the lease of job %', fence_job
                USING ERRCODE = 'BW001', DETAIL = fence_job;
        END IF;
    END
    $$
    """,
)
# Replicas reallocating leases take this transaction lock, one at a time ("leases").
LEASE_LOCK_KEY: Final = 0x6C6561736573
OUTBOX_CHANNEL: Final = "benchwatch_outbox"
# Announced state rows (`commit(announce=True)`): the payload is their namespace (`PostgresStore.write_mark`).
ROWS_CHANNEL: Final = "benchwatch_rows"
# The SQLSTATE `benchwatch_fence` raises: the job's lease is no longer this replica's (its detail: the job id).
LEASE_LOST_SQLSTATE: Final = "BW001"
# Replicas routing events or flushing timers hold this session lock: rule state has one writer at a time ("rules").
RULES_LOCK_KEY: Final = 0x72756C6573
SCHEMA_VERSION: Final = len(MIGRATIONS)


def statements(script: str) -> list[str]:
    """The statements of a migration script: split at each ';' outside a `$$`-quoted function body (our scripts
    hold no ';' inside literals)."""
    found: list[str] = []
    current = ""
    for index, part in enumerate(script.split("$$")):
        if index % 2:  # inside a function body: kept whole
            current += f"$${part}$$"
            continue
        first, *rest = part.split(";")
        current += first
        for piece in rest:
            found.append(current)
            current = piece
    found.append(current)
    return [statement.strip() for statement in found if statement.strip()]

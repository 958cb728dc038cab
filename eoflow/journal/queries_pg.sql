-- The PostgreSQL journal's SQL where it differs from queries.sql ("-- name: NAME" sections).
-- Every query of queries.sql not named here runs on PostgreSQL as it is: pg.py turns its
-- placeholders (? and ?N, kept here too) into psycopg's. What differs, and why:
--   * there is no rowid: eoflow_workflows.seq (an identity column) keeps the order of creation;
--   * a parameter only compared with NULL has no type PostgreSQL can infer: it is cast;
--   * lists of ids arrive as one JSON array (as on SQLite), read with jsonb_array_elements_text;
--   * raw bytes are bytea, and so are a run's inputs (JSON text, or packed with raw bytes);
--   * SQLite's `+column` (which keeps its planner off an index) does not exist.

-- name: pg_migration_1
-- The schema of SQLite's migrations 1 to 6, at once (see queries.sql for each column's story).
CREATE TABLE IF NOT EXISTS eoflow_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE eoflow_workflows (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY,  -- the order of creation
    workflow_id       TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    status            TEXT NOT NULL,
    inputs            BYTEA NOT NULL,
    output            TEXT,
    error             TEXT,
    created_ms        BIGINT NOT NULL,
    updated_ms        BIGINT NOT NULL,
    recovery_attempts INTEGER NOT NULL DEFAULT 0,
    progress_mark     INTEGER NOT NULL DEFAULT 0,
    parent_id         TEXT,
    queue             TEXT,
    lane              TEXT,
    deadline_ms       BIGINT,
    priority          INTEGER NOT NULL DEFAULT 0,
    dedup_id          TEXT,
    not_before_ms     BIGINT,
    timeout_ms        BIGINT
);
CREATE UNIQUE INDEX eoflow_workflows_seq ON eoflow_workflows (seq);
CREATE INDEX eoflow_workflows_status ON eoflow_workflows (status, name);
CREATE INDEX eoflow_workflows_updated ON eoflow_workflows (updated_ms);
CREATE UNIQUE INDEX eoflow_workflows_dedup ON eoflow_workflows (queue, dedup_id)
    WHERE dedup_id IS NOT NULL AND status IN ('ENQUEUED', 'PENDING');
CREATE INDEX eoflow_workflows_queue ON eoflow_workflows (queue, status, priority)
    WHERE queue IS NOT NULL;
CREATE INDEX eoflow_workflows_parent ON eoflow_workflows (parent_id) WHERE parent_id IS NOT NULL;
CREATE TABLE eoflow_steps (
    workflow_id TEXT NOT NULL,
    step        INTEGER NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    output      TEXT,
    error       TEXT,
    attempts    INTEGER NOT NULL,
    started_ms  BIGINT NOT NULL,
    ended_ms    BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, step)
);
CREATE TABLE eoflow_kafka_offsets (
    group_id   TEXT NOT NULL,
    topic      TEXT NOT NULL,
    partition  INTEGER NOT NULL,
    "offset"   BIGINT NOT NULL,
    messages   BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);
CREATE TABLE eoflow_quarantine (
    key            TEXT PRIMARY KEY,
    group_id       TEXT NOT NULL,
    topic          TEXT NOT NULL,
    partition      INTEGER NOT NULL,
    "offset"       BIGINT NOT NULL,
    handler        TEXT NOT NULL,
    message_key    BYTEA,
    value          BYTEA,
    headers        TEXT NOT NULL,
    timestamp_ms   BIGINT,
    error          TEXT NOT NULL,
    attempts       INTEGER NOT NULL,
    quarantined_ms BIGINT NOT NULL,
    status         TEXT NOT NULL,
    raw            BYTEA
);
CREATE TABLE eoflow_requests (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    action      TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE TABLE eoflow_messages (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination TEXT NOT NULL,
    topic       TEXT NOT NULL,
    message     TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE INDEX eoflow_messages_inbox ON eoflow_messages (destination, topic, seq);
CREATE TABLE eoflow_events (
    workflow_id TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, key)
);
CREATE TABLE eoflow_kafka_topics (
    group_id    TEXT NOT NULL,
    topic       TEXT NOT NULL,
    topic_id    TEXT,
    incarnation INTEGER NOT NULL DEFAULT 0,
    updated_ms  BIGINT NOT NULL,
    PRIMARY KEY (group_id, topic)
);

-- name: tx_schema_1
CREATE TABLE IF NOT EXISTS eoflow_tx_outputs (
    workflow_id TEXT NOT NULL,
    step        INTEGER NOT NULL,
    name        TEXT NOT NULL,
    output      TEXT,
    error       TEXT,
    ended_ms    BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, step)
);
CREATE TABLE IF NOT EXISTS eoflow_kafka_keys (
    key        TEXT PRIMARY KEY,
    handler    TEXT NOT NULL,
    applied_ms BIGINT NOT NULL
);

-- name: has_table
-- In the journal's own schema (the one the locks below name), not anywhere on the search_path.
SELECT to_regclass(quote_ident(current_schema()) || '.' || ?) IS NOT NULL;

-- name: write_lock
-- Taken first in a write transaction of the journal: one writer at a time per schema (the
-- engine's batches, an operator's change from the CLI), as SQLite's BEGIN IMMEDIATE. Sent
-- with BEGIN and the transaction's first statement, in one round trip.
SELECT pg_advisory_xact_lock(hashtext('eoflow-write:' || current_schema()));

-- name: write_lock_shared
-- The same lock, shared: an engine's batch that writes only its own runs (steps, outcomes,
-- @transaction bodies) and inserts whose conflicts the unique indexes settle (new runs, Kafka
-- keys) runs beside the other engines' such batches; any other write waits for them all, and
-- they for it. A takeover is such another write: no batch of the executor it expires is in
-- flight, and its next one finds it fenced.
SELECT pg_advisory_xact_lock_shared(hashtext('eoflow-write:' || current_schema()));

-- name: migration_lock
-- One migration at a time per schema, whichever process starts first (held to COMMIT).
SELECT pg_advisory_xact_lock(hashtext('eoflow-migrate:' || current_schema()));

-- name: try_owner_lock
-- The whole journal (a schema of a database), for `eoflow journal copy`: no engine runs on
-- it meanwhile. Held by the session.
SELECT pg_try_advisory_lock(hashtext('eoflow-owner:' || current_schema()));

-- name: try_engine_lock
-- Held (shared) by every engine's writer session: many engines share a journal, and a copy
-- (above) waits for none of them to run.
SELECT pg_try_advisory_lock_shared(hashtext('eoflow-owner:' || current_schema()));

-- name: owner_of_lock
SELECT a.application_name, a.client_addr::text, a.pid FROM pg_locks AS l
JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.objid = (hashtext('eoflow-owner:' || current_schema()))::oid
LIMIT 1;

-- name: note_kafka_offset
INSERT INTO eoflow_kafka_offsets (group_id, topic, partition, "offset", messages, updated_ms)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET "offset" = greatest(eoflow_kafka_offsets."offset", excluded."offset"),
    messages = eoflow_kafka_offsets.messages + excluded.messages, updated_ms = excluded.updated_ms;

-- name: pg_migration_2
-- Executors: the engines that run this journal's work, each with a lease it renews by
-- heartbeat. A PENDING run is owned by one executor (eoflow_workflows.executor_id): the one
-- that started it, dequeued it or took it over. An executor whose lease ran out is EXPIRED by
-- the next one to look, which takes its runs over; one that shut down cleanly is STOPPED and
-- left its runs unowned (NULL), for any executor to claim at once.
CREATE TABLE eoflow_executors (
    executor_id  TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_ms   BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    lease_ms     BIGINT NOT NULL,
    status       TEXT NOT NULL,
    process_space TEXT
);
ALTER TABLE eoflow_workflows ADD COLUMN executor_id TEXT;
-- When a queued run was dequeued: a queue's rate limit counts these, across engines.
ALTER TABLE eoflow_workflows ADD COLUMN dequeued_ms BIGINT;
CREATE INDEX eoflow_workflows_executor ON eoflow_workflows (executor_id)
    WHERE status = 'PENDING';

-- name: owned_runs
SELECT workflow_id, name, status, inputs, output, error, created_ms, updated_ms,
       recovery_attempts, parent_id, queue, lane, deadline_ms, not_before_ms
FROM eoflow_workflows WHERE status = 'PENDING' AND executor_id = ? ORDER BY seq;

-- name: expire_executors
UPDATE eoflow_executors SET status = 'EXPIRED'
WHERE status = 'ALIVE' AND executor_id <> ?1 AND (?3::boolean OR heartbeat_ms + lease_ms < ?2)
RETURNING executor_id;

-- name: list_workflows
SELECT workflow_id, name, status, inputs, output, error, created_ms, updated_ms,
       recovery_attempts, parent_id, queue, lane, deadline_ms, not_before_ms, executor_id,
       app_version, trace_context
FROM eoflow_workflows
WHERE (?1::text IS NULL OR status = ?1)
  AND (?2::text IS NULL OR name = ?2 OR name LIKE '%.' || ?2)
  AND (?4::text IS NULL OR app_version = ?4)
ORDER BY seq DESC LIMIT ?3;

-- name: finished_since
SELECT count(*) FROM eoflow_workflows WHERE updated_ms >= ? AND status = 'SUCCESS';

-- name: list_quarantine
SELECT key, group_id, topic, partition, "offset", handler, message_key, value, headers,
       timestamp_ms, error, attempts, quarantined_ms, status, raw
FROM eoflow_quarantine WHERE (?1::text IS NULL OR status = ?1)
ORDER BY quarantined_ms DESC LIMIT ?2;

-- name: quarantined_keys
SELECT key FROM eoflow_quarantine
WHERE status = 'QUARANTINED' AND attempts > 0 AND (?1::text IS NULL OR handler = ?1)
  AND (?2::text IS NULL OR topic = ?2)
ORDER BY group_id, topic, partition, "offset";

-- name: set_quarantine_status
UPDATE eoflow_quarantine SET status = ?, error = coalesce(?::text, error), attempts = attempts + ?
WHERE key = ?;

-- name: queue_ready
-- The third column: since when the run has been ready (for the queue's wait time).
SELECT workflow_id, name, coalesce(not_before_ms, created_ms) FROM eoflow_workflows
WHERE queue = ?1 AND status = 'ENQUEUED' AND (not_before_ms IS NULL OR not_before_ms <= ?2)
  AND (app_version IS NULL OR ?5::text IS NULL OR app_version = (
    SELECT x.app_version FROM eoflow_executors AS x WHERE x.executor_id = ?5))
ORDER BY CASE WHEN ?3 THEN priority ELSE 0 END, seq LIMIT ?4;

-- name: prune_runs_page
SELECT w.seq, w.workflow_id, w.updated_ms FROM eoflow_workflows AS w
WHERE w.updated_ms < ?1 AND w.updated_ms >= ?2
  AND (w.updated_ms > ?2 OR w.seq > ?3)
  AND w.status IN ('SUCCESS', 'ERROR', 'CANCELLED')
  AND (w.parent_id IS NULL OR NOT EXISTS (
        SELECT 1 FROM eoflow_workflows AS p
        WHERE p.workflow_id = w.parent_id AND p.status IN ('PENDING', 'ENQUEUED', 'PARKED')))
ORDER BY w.updated_ms, w.seq LIMIT ?4;

-- name: prune_steps
DELETE FROM eoflow_steps WHERE workflow_id IN (SELECT jsonb_array_elements_text(?1::jsonb));

-- name: prune_events
DELETE FROM eoflow_events WHERE workflow_id IN (SELECT jsonb_array_elements_text(?1::jsonb));

-- name: prune_messages
DELETE FROM eoflow_messages WHERE destination IN (SELECT jsonb_array_elements_text(?1::jsonb));

-- name: prune_tx_outputs
DELETE FROM eoflow_tx_outputs WHERE workflow_id IN (SELECT jsonb_array_elements_text(?1::jsonb));

-- name: prune_workflows
DELETE FROM eoflow_workflows
WHERE workflow_id IN (SELECT jsonb_array_elements_text(?1::jsonb))
  AND status IN ('SUCCESS', 'ERROR', 'CANCELLED')
RETURNING workflow_id;

-- name: forget_new_keys
DELETE FROM eoflow_kafka_keys WHERE key IN (SELECT jsonb_array_elements_text(?1::jsonb));

-- name: prune_keys
DELETE FROM eoflow_kafka_keys WHERE key IN (SELECT jsonb_array_elements_text(?1::jsonb));

-- name: prune_quarantined
DELETE FROM eoflow_quarantine
WHERE key IN (SELECT jsonb_array_elements_text(?1::jsonb)) AND status <> 'QUARANTINED';

-- name: export_runs
SELECT seq, workflow_id, name, status, inputs, output, error, created_ms, updated_ms,
       recovery_attempts, parent_id, queue
FROM eoflow_workflows
WHERE seq > ?1 AND (?2::bigint IS NULL OR updated_ms >= ?2)
  AND (?3::text IS NULL OR status = ?3) AND (?4::text IS NULL OR workflow_id = ?4)
ORDER BY seq LIMIT ?5;

-- name: next_kafka_incarnation
INSERT INTO eoflow_kafka_topics (group_id, topic, topic_id, incarnation, updated_ms)
VALUES (?1, ?2, NULL, 1, ?3)
ON CONFLICT (group_id, topic) DO UPDATE
SET topic_id = NULL, incarnation = eoflow_kafka_topics.incarnation + 1, updated_ms = ?3
RETURNING incarnation;

-- name: name_session
-- This session's name in pg_stat_activity: an engine's writer is named after its executor ?1,
-- so that another engine can end it once its lease ran out (end_lapsed_sessions). A digest of
-- the id comes first: the server keeps 63 bytes of a name, and an id of a long host name cut
-- there would lose the random part that tells a restarted process from the one before it.
-- The queries below compute the same name, on the same server.
SELECT set_config('application_name',
                  left('eoflow ' || to_hex(hashtext(?1)) || ' ' || ?1, 63), false);

-- name: end_lapsed_sessions
-- The writer sessions of the executors whose lease ran out by ?2 (this engine's clock) that
-- are inside a transaction, ended before their runs are taken over (the transaction rolls
-- back): an engine paused where the server never times its session out (between the
-- statements of a pipeline and their Sync) would hold the journal's write lock, and every
-- takeover behind it, for as long as it sleeps. Names as name_session's, or as engines before
-- it named themselves ('eoflow ' || id) when that was not cut; for an id that is not printable
-- ASCII (a host name), which the server escapes in a session's name, the name's digest.
SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid)) FROM pg_stat_activity AS a
JOIN eoflow_executors AS x ON a.application_name IN (
    left('eoflow ' || to_hex(hashtext(x.executor_id)) || ' ' || x.executor_id, 63),
    CASE WHEN length('eoflow ' || x.executor_id) <= 63 THEN 'eoflow ' || x.executor_id END)
  OR (x.executor_id ~ '[^ -~]'  -- not printable ASCII: the server escaped it in the name
      AND a.application_name LIKE 'eoflow ' || to_hex(hashtext(x.executor_id)) || ' %')
WHERE x.status = 'ALIVE' AND x.executor_id <> ?1 AND x.heartbeat_ms + x.lease_ms < ?2
  AND a.datname = current_database() AND a.pid <> pg_backend_pid()
  AND a.xact_start IS NOT NULL;

-- name: end_named_sessions
-- The sessions named after the executors in ?1 (an array of ids; names as end_lapsed_sessions
-- matches them) that are inside a transaction, ended: in an application database (--app-db),
-- the writer of an engine whose runs were just taken over, so that its locks (a Kafka batch's
-- keys, a @transaction's rows) go with it instead of holding up the engines that apply the
-- same messages.
SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid)) FROM pg_stat_activity AS a
JOIN unnest(CAST(?1 AS TEXT[])) AS x(executor_id) ON a.application_name IN (
    left('eoflow ' || to_hex(hashtext(x.executor_id)) || ' ' || x.executor_id, 63),
    CASE WHEN length('eoflow ' || x.executor_id) <= 63 THEN 'eoflow ' || x.executor_id END)
  OR (x.executor_id ~ '[^ -~]'
      AND a.application_name LIKE 'eoflow ' || to_hex(hashtext(x.executor_id)) || ' %')
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
  AND a.xact_start IS NOT NULL;

-- name: pending_lane_order
-- As queries.sql's, in this schema's order of creation (seq).
SELECT workflow_id, lane, coalesce(executor_id = ?1, false) FROM eoflow_workflows
WHERE status = 'PENDING' AND lane IN (SELECT jsonb_array_elements_text(?2::jsonb)) ORDER BY seq;

-- The SQL of the SQLite journal, one named section per query ("-- name: NAME").
-- Every table is prefixed eoflow_ because, by default, the application's own tables live in
-- the same file. Times are integer milliseconds since the epoch.

-- name: migration_1
CREATE TABLE IF NOT EXISTS eoflow_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE eoflow_workflows (
    workflow_id       TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    status            TEXT NOT NULL,
    inputs            TEXT NOT NULL,
    output            TEXT,
    error             TEXT,
    created_ms        INTEGER NOT NULL,
    updated_ms        INTEGER NOT NULL,
    recovery_attempts INTEGER NOT NULL DEFAULT 0,
    progress_mark     INTEGER NOT NULL DEFAULT 0,  -- steps recorded at the last recovery
    parent_id         TEXT,
    queue             TEXT,
    lane              TEXT,     -- runs of one lane (a Kafka partition) never overlap
    deadline_ms       INTEGER,  -- cancelled as timed out after this moment
    priority          INTEGER NOT NULL DEFAULT 0,
    dedup_id          TEXT,
    not_before_ms     INTEGER   -- an enqueued run starts no earlier than this
);
CREATE INDEX eoflow_workflows_status ON eoflow_workflows (status, name);
CREATE INDEX eoflow_workflows_updated ON eoflow_workflows (updated_ms);
CREATE UNIQUE INDEX eoflow_workflows_dedup ON eoflow_workflows (queue, dedup_id)
    WHERE dedup_id IS NOT NULL AND status IN ('ENQUEUED', 'PENDING');
CREATE TABLE eoflow_steps (
    workflow_id TEXT NOT NULL,
    step        INTEGER NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    output      TEXT,
    error       TEXT,
    attempts    INTEGER NOT NULL,
    started_ms  INTEGER NOT NULL,
    ended_ms    INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, step)
) WITHOUT ROWID;
CREATE TABLE eoflow_kafka_offsets (
    group_id   TEXT NOT NULL,
    topic      TEXT NOT NULL,
    partition  INTEGER NOT NULL,
    offset     INTEGER NOT NULL,   -- the highest offset recorded in this journal
    messages   INTEGER NOT NULL,   -- messages recorded for this partition, in all
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
) WITHOUT ROWID;
CREATE TABLE eoflow_quarantine (
    key            TEXT PRIMARY KEY,
    group_id       TEXT NOT NULL,
    topic          TEXT NOT NULL,
    partition      INTEGER NOT NULL,
    offset         INTEGER NOT NULL,
    handler        TEXT NOT NULL,
    message_key    BLOB,
    value          BLOB,
    headers        TEXT NOT NULL,
    timestamp_ms   INTEGER,
    error          TEXT NOT NULL,
    attempts       INTEGER NOT NULL,
    quarantined_ms INTEGER NOT NULL,
    status         TEXT NOT NULL
);
CREATE TABLE eoflow_requests (
    id          INTEGER PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    action      TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);

-- name: migration_2
-- Messages between workflows (send/recv) and events they publish (set_event/get_event).
CREATE TABLE eoflow_messages (
    seq         INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    topic       TEXT NOT NULL,
    message     TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE INDEX eoflow_messages_inbox ON eoflow_messages (destination, topic, seq);
CREATE TABLE eoflow_events (
    workflow_id TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, key)
) WITHOUT ROWID;
CREATE INDEX eoflow_workflows_queue ON eoflow_workflows (queue, status, priority)
    WHERE queue IS NOT NULL;
CREATE INDEX eoflow_workflows_parent ON eoflow_workflows (parent_id) WHERE parent_id IS NOT NULL;

-- name: migration_3
-- A run's timeout, so that a resume or a fork can start its clock again from the journal alone
-- (the CLI has no app loaded to ask). Runs created before this column: their deadline was set
-- at creation, so deadline - created is their timeout.
ALTER TABLE eoflow_workflows ADD COLUMN timeout_ms INTEGER;
UPDATE eoflow_workflows SET timeout_ms = deadline_ms - created_ms WHERE deadline_ms IS NOT NULL;

-- name: migration_4
-- The Kafka topics each group has consumed into this journal: the broker's id of the topic
-- (KIP-516) and the incarnation eoflow keys its messages under. A topic deleted and created
-- again (or a broker that lost its data) starts its offsets from 0 under a new id: the
-- consumer refuses it until an operator starts a new incarnation, whose keys never collide
-- with the old ones (eoflow kafka restart-topic).
CREATE TABLE eoflow_kafka_topics (
    group_id    TEXT NOT NULL,
    topic       TEXT NOT NULL,
    topic_id    TEXT,              -- NULL: not known yet (recorded on the next batch)
    incarnation INTEGER NOT NULL DEFAULT 0,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic)
) WITHOUT ROWID;

-- name: migration_5
-- Steps move to a rowid table. In a WITHOUT ROWID table a row over about 1 KB spills into an
-- overflow page of its own: a step returning a 1 KB Kafka payload took 4.7 KB (measured with
-- benchmarks/journal_bytes.py); here it takes 1.5 KB. Small steps pay about 47 bytes more for
-- the (workflow_id, step) index. A large journal copies its steps once, when first opened.
CREATE TABLE eoflow_steps_v5 (
    workflow_id TEXT NOT NULL,
    step        INTEGER NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    output      TEXT,
    error       TEXT,
    attempts    INTEGER NOT NULL,
    started_ms  INTEGER NOT NULL,
    ended_ms    INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, step)
);
INSERT INTO eoflow_steps_v5
SELECT workflow_id, step, name, kind, output, error, attempts, started_ms, ended_ms
FROM eoflow_steps ORDER BY workflow_id, step;
DROP TABLE eoflow_steps;
ALTER TABLE eoflow_steps_v5 RENAME TO eoflow_steps;

-- name: migration_6
-- A record the Kafka client could not decode (a header key that is not UTF-8) is quarantined
-- with the raw bytes of the record batch that holds it (Kafka's record format), since the
-- client gives none of its fields. NULL for every other entry.
ALTER TABLE eoflow_quarantine ADD COLUMN raw BLOB;

-- name: migration_7
-- Executors: the engines that run this journal's work, each with a lease it renews by
-- heartbeat. A PENDING run is owned by one executor (eoflow_workflows.executor_id): the one
-- that started it, dequeued it or took it over. An executor whose lease ran out is EXPIRED by
-- the next one to look, which takes its runs over; one that shut down cleanly is STOPPED and
-- left its runs unowned (NULL), for any executor to claim at once.
CREATE TABLE eoflow_executors (
    executor_id  TEXT PRIMARY KEY,     -- host:pid:random
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_ms   INTEGER NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    lease_ms     INTEGER NOT NULL,     -- a heartbeat holds the runs this long
    status       TEXT NOT NULL,        -- ALIVE, STOPPED or EXPIRED
    -- The machine boot and PID namespace its pid belongs to (NULL where unknown): an executor
    -- in the same one can tell that this one's process is gone without waiting for its lease.
    process_space TEXT
) WITHOUT ROWID;
ALTER TABLE eoflow_workflows ADD COLUMN executor_id TEXT;
-- When a queued run was dequeued: a queue's rate limit counts these, across engines.
ALTER TABLE eoflow_workflows ADD COLUMN dequeued_ms BIGINT;
CREATE INDEX eoflow_workflows_executor ON eoflow_workflows (executor_id)
    WHERE status = 'PENDING';

-- name: migration_8
-- The version of the app's code that started a run (NULL: not known, e.g. a run a Client
-- started), and the version each executor runs (engine/versions.py).
ALTER TABLE eoflow_workflows ADD COLUMN app_version TEXT;
ALTER TABLE eoflow_executors ADD COLUMN app_version TEXT;

-- name: migration_9
-- A run's W3C trace context (a traceparent: the span that started it), when OpenTelemetry
-- traced its start: every execution of the run, after a crash too, continues that trace.
ALTER TABLE eoflow_workflows ADD COLUMN trace_context TEXT;

-- name: tx_schema_1
-- Kept by whichever database runs @transaction functions (the journal, or --app-db).
CREATE TABLE IF NOT EXISTS eoflow_tx_outputs (
    workflow_id TEXT NOT NULL,
    step        INTEGER NOT NULL,
    name        TEXT NOT NULL,
    output      TEXT,
    error       TEXT,
    ended_ms    INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS eoflow_kafka_keys (
    key        TEXT PRIMARY KEY,  -- the message's idempotency key; see engine/kafka_keys.py
    handler    TEXT NOT NULL,
    applied_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- name: register_executor
INSERT INTO eoflow_executors
    (executor_id, host, pid, started_ms, heartbeat_ms, lease_ms, status, process_space,
     app_version)
VALUES (?, ?, ?, ?, ?, ?, 'ALIVE', ?, ?);

-- name: neighbours
-- The other live executors whose processes this one can see (the same process space).
SELECT executor_id, pid FROM eoflow_executors
WHERE status = 'ALIVE' AND executor_id <> ? AND process_space = ?;

-- name: expire_executor
UPDATE eoflow_executors SET status = 'EXPIRED' WHERE executor_id = ? AND status = 'ALIVE';

-- name: forget_executors
-- Executors that stopped or expired before ?1 and own nothing: their history is not kept.
DELETE FROM eoflow_executors
WHERE status <> 'ALIVE' AND heartbeat_ms < ?1 AND NOT EXISTS (
    SELECT 1 FROM eoflow_workflows AS w
    WHERE w.status = 'PENDING' AND w.executor_id = eoflow_executors.executor_id);

-- name: executor_status
-- The fence: a write batch of an executor goes on only while this says ALIVE.
SELECT status FROM eoflow_executors WHERE executor_id = ?;

-- name: renew_lease
UPDATE eoflow_executors SET heartbeat_ms = ?1 WHERE executor_id = ?2 AND status = 'ALIVE';

-- name: expire_executors
-- Executors whose lease ran out; with ?3 true, every other live one (this engine holds the
-- journal's file lock, so no other can be running).
UPDATE eoflow_executors SET status = 'EXPIRED'
WHERE status = 'ALIVE' AND executor_id <> ?1 AND (?3 OR heartbeat_ms + lease_ms < ?2)
RETURNING executor_id;

-- name: claim_runs
-- PENDING runs that no live executor owns: unowned ones (handed over at a shutdown, started
-- by a client) and those of an executor that stopped or expired; only runs of executor ?1's
-- version of the app, or of none recorded (every claim of a run checks this, and dequeuing).
UPDATE eoflow_workflows SET executor_id = ?1
WHERE status = 'PENDING' AND (executor_id IS NULL OR NOT EXISTS (
    SELECT 1 FROM eoflow_executors AS e
    WHERE e.executor_id = eoflow_workflows.executor_id AND e.status = 'ALIVE'))
  AND (app_version IS NULL OR app_version = (
    SELECT x.app_version FROM eoflow_executors AS x WHERE x.executor_id = ?1))
RETURNING workflow_id;

-- name: claim_run
-- One PENDING run, unless a live executor other than ?1 owns it.
UPDATE eoflow_workflows SET executor_id = ?1
WHERE workflow_id = ?2 AND status || '' = 'PENDING'  -- see finish_workflow
    AND (executor_id IS NULL OR executor_id = ?1
    OR NOT EXISTS (SELECT 1 FROM eoflow_executors AS e
                   WHERE e.executor_id = eoflow_workflows.executor_id AND e.status = 'ALIVE'))
    AND (app_version IS NULL OR app_version = (  -- see claim_runs
        SELECT x.app_version FROM eoflow_executors AS x WHERE x.executor_id = ?1));

-- name: foreign_lane_runs
-- PENDING runs of a partition's lanes (?1, and its keys' lanes) that executor ?2 does not own.
-- Through the index of PENDING runs' owners: a run is read only when it is not ?2's (a read
-- of every PENDING run, 20,000 behind a busy consumer, held up each partition assigned).
SELECT count(*) FROM eoflow_workflows INDEXED BY eoflow_workflows_executor
WHERE status = 'PENDING' AND (executor_id IS NULL OR executor_id <> ?2)
  AND (lane = ?1 OR lane LIKE ?1 || ':key:%');

-- name: pending_lane_order
-- The PENDING runs of the lanes in JSON array ?2, in the order they were created: (id, lane,
-- owned by executor ?1?). A takeover finds in it the runs it claimed that older runs of their
-- lane, held by another executor, must precede (engine/heldlanes.py). Only those lanes' rows
-- come back: it is read every 0.2 s while runs are held, beside up to 20,000 queued runs.
SELECT workflow_id, lane, coalesce(executor_id = ?1, 0) FROM eoflow_workflows
WHERE status = 'PENDING' AND lane IN (SELECT value FROM json_each(?2)) ORDER BY rowid;

-- name: anything_to_claim
-- Whether claim_runs would find something (read first: an idle engine writes nothing). The
-- lease keeper asks every second, while a Kafka consumer may keep 20,000 runs PENDING: the
-- runs' owners are read by skipping through the index of PENDING runs' owners (one seek per
-- owner), and runs are looked at only when their owner is not alive (a row read per run for
-- every PENDING run took 5.7% of a busy consumer's CPU). INDEXED BY: SQLite's planner took
-- the status index instead (PostgreSQL's planner, without it, picks this one: pg.to_pg).
SELECT EXISTS (SELECT 1 FROM eoflow_executors
               WHERE status = 'ALIVE' AND executor_id <> ?1 AND heartbeat_ms + lease_ms < ?2)
    OR EXISTS (SELECT 1 FROM eoflow_workflows AS w INDEXED BY eoflow_workflows_executor
               WHERE w.status = 'PENDING' AND w.executor_id IS NULL
                 AND (w.app_version IS NULL OR w.app_version = (  -- see claim_runs
                   SELECT x.app_version FROM eoflow_executors AS x
                   WHERE x.executor_id = ?1)))
    OR EXISTS (
        WITH RECURSIVE owner (id) AS (
            SELECT (SELECT min(executor_id) FROM eoflow_workflows INDEXED BY eoflow_workflows_executor
                    WHERE status = 'PENDING')
            UNION ALL
            SELECT (SELECT min(executor_id) FROM eoflow_workflows INDEXED BY eoflow_workflows_executor
                    WHERE status = 'PENDING' AND executor_id > owner.id)
            FROM owner WHERE owner.id IS NOT NULL)
        SELECT 1 FROM owner
        WHERE owner.id IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM eoflow_executors AS e
                WHERE e.executor_id = owner.id AND e.status = 'ALIVE')
          AND EXISTS (
                SELECT 1 FROM eoflow_workflows AS w INDEXED BY eoflow_workflows_executor
                WHERE w.status = 'PENDING' AND w.executor_id = owner.id
                  AND (w.app_version IS NULL OR w.app_version = (
                    SELECT x.app_version FROM eoflow_executors AS x
                    WHERE x.executor_id = ?1))));

-- name: owned_runs
-- The PENDING runs an executor owns, in the order they were created (each lane's order).
SELECT workflow_id, name, status, inputs, output, error, created_ms, updated_ms,
       recovery_attempts, parent_id, queue, lane, deadline_ms, not_before_ms
FROM eoflow_workflows WHERE status = 'PENDING' AND executor_id = ? ORDER BY rowid;

-- name: stop_executor
-- A clean shutdown: the executor's PENDING runs go unowned, for another to claim at once.
UPDATE eoflow_executors SET status = 'STOPPED', heartbeat_ms = ?1 WHERE executor_id = ?2;

-- name: hand_over_runs
UPDATE eoflow_workflows SET executor_id = NULL WHERE status = 'PENDING' AND executor_id = ?;

-- name: list_executors
SELECT e.executor_id, e.host, e.pid, e.started_ms, e.heartbeat_ms, e.lease_ms, e.status,
       (SELECT count(*) FROM eoflow_workflows AS w
        WHERE w.status = 'PENDING' AND w.executor_id = e.executor_id), e.app_version
FROM eoflow_executors AS e ORDER BY e.started_ms DESC, e.executor_id LIMIT ?;

-- name: get_meta
SELECT value FROM eoflow_meta WHERE key = ?;

-- name: set_meta
INSERT INTO eoflow_meta (key, value) VALUES (?, ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: insert_workflow
INSERT INTO eoflow_workflows
    (workflow_id, name, status, inputs, created_ms, updated_ms, parent_id, queue, lane,
     deadline_ms, priority, dedup_id, not_before_ms, timeout_ms, executor_id, app_version,
     trace_context)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (workflow_id) DO NOTHING;

-- name: get_workflow
SELECT workflow_id, name, status, inputs, output, error, created_ms, updated_ms,
       recovery_attempts, parent_id, queue, lane, deadline_ms, not_before_ms, executor_id,
       app_version, trace_context
FROM eoflow_workflows WHERE workflow_id = ?;

-- name: workflow_name_status
SELECT name, status FROM eoflow_workflows WHERE workflow_id = ?;

-- name: finish_workflow
-- `status || ''` keeps the planner on the primary key: on a young PostgreSQL journal (no
-- statistics yet) the plan a prepared statement caches otherwise scans an index of every
-- PENDING run, dead versions included, for each update (seen: a run's finish reading 3,000
-- index entries, 1 ms of server CPU per run, the rate falling as the table grew).
UPDATE eoflow_workflows SET status = ?, output = ?, error = ?, updated_ms = ?
WHERE workflow_id = ? AND status || '' = 'PENDING';

-- name: set_status
UPDATE eoflow_workflows SET status = ?, updated_ms = ? WHERE workflow_id = ?;

-- name: resume_workflow
-- A resumed run's timeout starts again now (a NULL timeout keeps it without a deadline).
UPDATE eoflow_workflows
SET status = 'PENDING', recovery_attempts = 0, deadline_ms = ?1 + timeout_ms, updated_ms = ?1,
    output = NULL, error = NULL
WHERE workflow_id = ?2;

-- name: fork_workflow
-- A new PENDING run of the source's workflow and inputs, its timeout starting now.
INSERT INTO eoflow_workflows
    (workflow_id, name, status, inputs, created_ms, updated_ms, deadline_ms, timeout_ms)
SELECT ?1, name, 'PENDING', inputs, ?3, ?3, ?3 + timeout_ms, timeout_ms
FROM eoflow_workflows WHERE workflow_id = ?2
ON CONFLICT (workflow_id) DO NOTHING;

-- name: insert_step
INSERT INTO eoflow_steps
    (workflow_id, step, name, kind, output, error, attempts, started_ms, ended_ms)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: steps_of
SELECT workflow_id, step, name, kind, output, error, attempts, started_ms, ended_ms
FROM eoflow_steps WHERE workflow_id = ? ORDER BY step;

-- name: step_counts_of_pending
SELECT w.workflow_id, count(s.step) FROM eoflow_workflows AS w
LEFT JOIN eoflow_steps AS s ON s.workflow_id = w.workflow_id
WHERE w.status = 'PENDING' GROUP BY w.workflow_id;

-- name: last_step
SELECT step, error IS NOT NULL FROM eoflow_steps WHERE workflow_id = ?
ORDER BY step DESC LIMIT 1;

-- name: forget_failed_step
-- The failed step of an ERROR run that is resumed: it runs again (its transaction record too,
-- when it is kept in this file; an --app-db keeps its own).
DELETE FROM eoflow_steps WHERE workflow_id = ?1 AND step = ?2 AND error IS NOT NULL;

-- name: forget_failed_tx_output
DELETE FROM eoflow_tx_outputs WHERE workflow_id = ?1 AND step = ?2 AND error IS NOT NULL;

-- name: copy_steps_before
INSERT INTO eoflow_steps
    (workflow_id, step, name, kind, output, error, attempts, started_ms, ended_ms)
SELECT ?, step, name, kind, output, error, attempts, started_ms, ended_ms
FROM eoflow_steps WHERE workflow_id = ? AND step < ?;

-- name: note_recovery
UPDATE eoflow_workflows
SET recovery_attempts = CASE WHEN progress_mark < ?1 THEN 1 ELSE recovery_attempts + 1 END,
    progress_mark = ?1, updated_ms = ?2
WHERE workflow_id = ?3
RETURNING recovery_attempts;

-- name: park_workflow
UPDATE eoflow_workflows SET status = 'PARKED', updated_ms = ? WHERE workflow_id = ?;

-- name: list_workflows
SELECT workflow_id, name, status, inputs, output, error, created_ms, updated_ms,
       recovery_attempts, parent_id, queue, lane, deadline_ms, not_before_ms, executor_id,
       app_version, trace_context
FROM eoflow_workflows
WHERE (?1 IS NULL OR status = ?1)
  AND (?2 IS NULL OR name = ?2 OR name LIKE '%.' || ?2)  -- `handle` finds `Orders.handle`
  AND (?4 IS NULL OR app_version = ?4)
ORDER BY rowid DESC LIMIT ?3;

-- name: release_run
-- Any version of the app may run it from now on (an operator's choice: see versions.py).
UPDATE eoflow_workflows SET app_version = NULL WHERE workflow_id = ?;

-- name: release_version
UPDATE eoflow_workflows SET app_version = NULL
WHERE app_version = ? AND status IN ('PENDING', 'ENQUEUED');

-- name: verify_candidates
-- `eoflow verify`: runs with a status in ?1 (",PENDING,ENQUEUED,") or updated since ?2.
SELECT workflow_id, name, status, inputs FROM eoflow_workflows
WHERE ?1 LIKE '%,' || status || ',%' OR updated_ms >= ?2
ORDER BY created_ms, workflow_id LIMIT ?3;

-- name: live_runs_by_version
SELECT app_version, sum(CASE WHEN status = 'PENDING' THEN 1 ELSE 0 END),
       sum(CASE WHEN status = 'ENQUEUED' THEN 1 ELSE 0 END)
FROM eoflow_workflows WHERE status IN ('PENDING', 'ENQUEUED')
GROUP BY app_version ORDER BY app_version;

-- name: count_by_status
SELECT status, count(*) FROM eoflow_workflows GROUP BY status;

-- name: count_by_name
SELECT name, status, count(*) FROM eoflow_workflows GROUP BY name, status ORDER BY name;

-- name: recent_failures
SELECT workflow_id, name, status, error, updated_ms FROM eoflow_workflows
WHERE status IN ('ERROR', 'PARKED') ORDER BY updated_ms DESC LIMIT ?;

-- name: finished_since
-- `+status`: read the recent rows through the updated_ms index, not every SUCCESS run through
-- the status index (1.7 s against a few milliseconds, at 5 million runs: journal_scale.py).
SELECT count(*) FROM eoflow_workflows WHERE updated_ms >= ? AND +status = 'SUCCESS';

-- name: insert_tx_output
INSERT INTO eoflow_tx_outputs (workflow_id, step, name, output, error, ended_ms)
VALUES (?, ?, ?, ?, ?, ?);

-- name: get_tx_output
SELECT name, output, error, ended_ms FROM eoflow_tx_outputs WHERE workflow_id = ? AND step = ?;

-- name: get_step
SELECT workflow_id, step, name, kind, output, error, attempts, started_ms, ended_ms
FROM eoflow_steps WHERE workflow_id = ? AND step = ?;

-- name: insert_kafka_key
INSERT INTO eoflow_kafka_keys (key, handler, applied_ms) VALUES (?, ?, ?)
ON CONFLICT (key) DO NOTHING;

-- name: forget_new_keys
-- Keys inserted in this very transaction for messages that were then not applied (?1: a JSON
-- array of them).
DELETE FROM eoflow_kafka_keys WHERE key IN (SELECT value FROM json_each(?1));

-- name: kafka_key_exists
SELECT 1 FROM eoflow_kafka_keys WHERE key = ?;

-- name: note_kafka_offset
INSERT INTO eoflow_kafka_offsets (group_id, topic, partition, "offset", messages, updated_ms)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET "offset" = max("offset", excluded."offset"), messages = messages + excluded.messages,
    updated_ms = excluded.updated_ms;

-- name: kafka_offset_of
SELECT "offset" FROM eoflow_kafka_offsets WHERE group_id = ? AND topic = ? AND partition = ?;

-- name: get_kafka_topic
SELECT topic_id, incarnation FROM eoflow_kafka_topics WHERE group_id = ? AND topic = ?;

-- name: set_kafka_topic_id
INSERT INTO eoflow_kafka_topics (group_id, topic, topic_id, incarnation, updated_ms)
VALUES (?1, ?2, ?3, 0, ?4)
ON CONFLICT (group_id, topic) DO UPDATE SET topic_id = ?3, updated_ms = ?4;

-- name: next_kafka_incarnation
INSERT INTO eoflow_kafka_topics (group_id, topic, topic_id, incarnation, updated_ms)
VALUES (?1, ?2, NULL, 1, ?3)
ON CONFLICT (group_id, topic) DO UPDATE
SET topic_id = NULL, incarnation = incarnation + 1, updated_ms = ?3
RETURNING incarnation;

-- name: forget_kafka_offsets
DELETE FROM eoflow_kafka_offsets WHERE group_id = ? AND topic = ?;

-- name: kafka_offsets
SELECT group_id, topic, partition, "offset", messages, updated_ms FROM eoflow_kafka_offsets
ORDER BY group_id, topic, partition;

-- name: insert_quarantine
INSERT INTO eoflow_quarantine
    (key, group_id, topic, partition, "offset", handler, message_key, value, headers,
     timestamp_ms, error, attempts, quarantined_ms, status, raw)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'QUARANTINED', ?)
ON CONFLICT (key) DO NOTHING;

-- name: list_quarantine
SELECT key, group_id, topic, partition, "offset", handler, message_key, value, headers,
       timestamp_ms, error, attempts, quarantined_ms, status, raw
FROM eoflow_quarantine WHERE (?1 IS NULL OR status = ?1) ORDER BY quarantined_ms DESC LIMIT ?2;

-- name: quarantined_keys
-- Never a record the client could not decode (attempts = 0): it cannot be applied, only dropped.
SELECT key FROM eoflow_quarantine
WHERE status = 'QUARANTINED' AND attempts > 0 AND (?1 IS NULL OR handler = ?1) AND (?2 IS NULL OR topic = ?2)
ORDER BY group_id, topic, partition, "offset";

-- name: get_quarantine
SELECT key, group_id, topic, partition, "offset", handler, message_key, value, headers,
       timestamp_ms, error, attempts, quarantined_ms, status, raw
FROM eoflow_quarantine WHERE key = ?;

-- name: drop_quarantined
UPDATE eoflow_quarantine SET status = 'DROPPED' WHERE key = ? AND status = 'QUARANTINED';

-- name: set_quarantine_status
UPDATE eoflow_quarantine SET status = ?, error = coalesce(?, error), attempts = attempts + ?
WHERE key = ?;

-- name: insert_request
INSERT INTO eoflow_requests (workflow_id, action, created_ms) VALUES (?, ?, ?);

-- name: insert_message
INSERT INTO eoflow_messages (destination, topic, message, created_ms) VALUES (?, ?, ?, ?);

-- name: first_message
SELECT seq, message FROM eoflow_messages WHERE destination = ? AND topic = ? ORDER BY seq
LIMIT 1;

-- name: delete_message
DELETE FROM eoflow_messages WHERE seq = ?;

-- name: upsert_event
INSERT INTO eoflow_events (workflow_id, key, value, updated_ms) VALUES (?, ?, ?, ?)
ON CONFLICT (workflow_id, key) DO UPDATE SET value = excluded.value,
    updated_ms = excluded.updated_ms;

-- name: event_steps_before
SELECT output FROM eoflow_steps WHERE workflow_id = ? AND kind = 'set_event' AND step < ?
ORDER BY step;

-- name: get_event
SELECT value FROM eoflow_events WHERE workflow_id = ? AND key = ?;

-- name: set_not_before
UPDATE eoflow_workflows SET not_before_ms = ? WHERE workflow_id = ?;

-- name: live_children
SELECT workflow_id FROM eoflow_workflows
WHERE parent_id = ? AND status IN ('PENDING', 'ENQUEUED');

-- name: queue_running
SELECT count(*) FROM eoflow_workflows WHERE queue = ? AND status = 'PENDING';

-- name: queue_ready
-- The third column: since when the run has been ready (for the queue's wait time).
-- Only runs of executor ?5's version of the app, or of none recorded (see claim_runs).
SELECT workflow_id, name, coalesce(not_before_ms, created_ms) FROM eoflow_workflows
WHERE queue = ?1 AND status = 'ENQUEUED' AND (not_before_ms IS NULL OR not_before_ms <= ?2)
  AND (app_version IS NULL OR ?5 IS NULL OR app_version = (
    SELECT x.app_version FROM eoflow_executors AS x WHERE x.executor_id = ?5))
ORDER BY CASE WHEN ?3 THEN priority ELSE 0 END, rowid LIMIT ?4;

-- name: queue_depths
SELECT queue, count(*) FROM eoflow_workflows
WHERE status = 'ENQUEUED' AND queue IS NOT NULL GROUP BY queue ORDER BY queue;

-- name: queue_next_due
SELECT min(not_before_ms) FROM eoflow_workflows
WHERE queue = ? AND status = 'ENQUEUED' AND not_before_ms > ?;

-- name: dequeue
UPDATE eoflow_workflows SET status = 'PENDING', updated_ms = ?1, dequeued_ms = ?1,
    executor_id = ?2
WHERE workflow_id = ?3 AND status || '' = 'ENQUEUED';  -- see finish_workflow

-- name: queue_started_since
SELECT count(*) FROM eoflow_workflows WHERE queue = ? AND dequeued_ms > ?;

-- name: live_dedup
SELECT workflow_id FROM eoflow_workflows
WHERE queue = ? AND dedup_id = ? AND status IN ('ENQUEUED', 'PENDING');

-- name: latest_run_of
SELECT workflow_id FROM eoflow_workflows WHERE name = ? AND workflow_id LIKE ? || '%'
ORDER BY workflow_id DESC LIMIT 1;

-- name: has_requests
SELECT EXISTS (SELECT 1 FROM eoflow_requests);

-- name: take_requests
-- The requests for executor ?1 to act on: those about its runs, runs no live executor owns,
-- and messages (a quarantine retry names a message's key, not a run). The others wait for
-- the executor that holds their run.
DELETE FROM eoflow_requests WHERE id IN (
    SELECT r.id FROM eoflow_requests AS r
    LEFT JOIN eoflow_workflows AS w ON w.workflow_id = r.workflow_id
    WHERE w.workflow_id IS NULL OR w.executor_id IS NULL OR w.executor_id = ?1
       OR NOT EXISTS (SELECT 1 FROM eoflow_executors AS e
                      WHERE e.executor_id = w.executor_id AND e.status = 'ALIVE'))
RETURNING id, workflow_id, action;

-- name: tx_schema_2
-- Retention forgets Kafka keys oldest first.
CREATE INDEX IF NOT EXISTS eoflow_kafka_keys_applied ON eoflow_kafka_keys (applied_ms);

-- name: prune_marks
-- Per partition, the highest offset recorded (every message below it is recorded or was never
-- in Kafka), and the incarnation its keys are under.
SELECT o.group_id, o.topic, o.partition, o."offset", coalesce(t.incarnation, 0)
FROM eoflow_kafka_offsets AS o
LEFT JOIN eoflow_kafka_topics AS t ON t.group_id = o.group_id AND t.topic = o.topic;

-- name: prune_incarnations
SELECT group_id, topic, incarnation FROM eoflow_kafka_topics;

-- name: prune_runs_page
-- Finished runs last changed before ?1, after the cursor (?2 updated_ms, ?3 rowid), oldest
-- first; never a child whose parent is still live (it may replay and ask for the child).
-- `+status`: through the updated_ms index, from the cursor on. Through the status index it
-- read and sorted every finished run for each batch of 100 (47 ms at 100,000 runs kept):
-- the soak benchmark's engine spent its time there and its throughput fell to 20/s.
SELECT w.rowid, w.workflow_id, w.updated_ms FROM eoflow_workflows AS w
WHERE w.updated_ms < ?1 AND w.updated_ms >= ?2
  AND (w.updated_ms > ?2 OR w.rowid > ?3)
  AND +w.status IN ('SUCCESS', 'ERROR', 'CANCELLED')
  AND (w.parent_id IS NULL OR NOT EXISTS (
        SELECT 1 FROM eoflow_workflows AS p
        WHERE p.workflow_id = w.parent_id AND p.status IN ('PENDING', 'ENQUEUED', 'PARKED')))
ORDER BY w.updated_ms, w.rowid LIMIT ?4;

-- The deletes below take a batch of ids as one JSON array (?1): one statement per table and
-- batch, not one per run, so a batch holds the writer for little more than its SQL.
-- name: prune_steps
DELETE FROM eoflow_steps WHERE workflow_id IN (SELECT value FROM json_each(?1));

-- name: prune_events
DELETE FROM eoflow_events WHERE workflow_id IN (SELECT value FROM json_each(?1));

-- name: prune_messages
DELETE FROM eoflow_messages WHERE destination IN (SELECT value FROM json_each(?1));

-- name: prune_tx_outputs
DELETE FROM eoflow_tx_outputs WHERE workflow_id IN (SELECT value FROM json_each(?1));

-- name: prune_workflows
DELETE FROM eoflow_workflows
WHERE workflow_id IN (SELECT value FROM json_each(?1))
  AND +status IN ('SUCCESS', 'ERROR', 'CANCELLED')  -- `+`: by id, never through the status index
RETURNING workflow_id;

-- name: prune_keys_page
SELECT key, applied_ms FROM eoflow_kafka_keys
WHERE applied_ms < ?1 AND applied_ms >= ?2 AND (applied_ms > ?2 OR key > ?3)
ORDER BY applied_ms, key LIMIT ?4;

-- name: prune_keys
DELETE FROM eoflow_kafka_keys WHERE key IN (SELECT value FROM json_each(?1));

-- name: prune_quarantine_page
-- Quarantined messages stay until an operator retried or dropped them.
SELECT key FROM eoflow_quarantine
WHERE status <> 'QUARANTINED' AND quarantined_ms < ?1 AND key > ?2 ORDER BY key LIMIT ?3;

-- name: prune_quarantined
DELETE FROM eoflow_quarantine
WHERE key IN (SELECT value FROM json_each(?1)) AND status <> 'QUARANTINED';

-- name: delete_meta
DELETE FROM eoflow_meta WHERE key = ?;

-- name: check_orphan_steps
-- Steps whose run is not in the journal.
SELECT s.workflow_id, count(*) FROM eoflow_steps AS s
WHERE NOT EXISTS (SELECT 1 FROM eoflow_workflows AS w WHERE w.workflow_id = s.workflow_id)
GROUP BY s.workflow_id;

-- name: check_step_gaps
-- Finished runs whose steps are not numbered 1..n (every step of a run is recorded in order).
SELECT s.workflow_id, count(*), min(s.step), max(s.step) FROM eoflow_steps AS s
JOIN eoflow_workflows AS w ON w.workflow_id = s.workflow_id
WHERE w.status IN ('SUCCESS', 'ERROR', 'CANCELLED')
GROUP BY s.workflow_id HAVING count(*) <> max(s.step) OR min(s.step) <> 1;

-- name: check_statuses
SELECT workflow_id, status FROM eoflow_workflows
WHERE status NOT IN ('PENDING', 'ENQUEUED', 'PARKED', 'SUCCESS', 'ERROR', 'CANCELLED');

-- name: check_quarantine
SELECT key, handler, status FROM eoflow_quarantine;

-- name: check_run_exists
SELECT 1 FROM eoflow_workflows WHERE workflow_id = ?;

-- name: check_quarantined_exists
SELECT 1 FROM eoflow_quarantine WHERE key = ?;

-- name: info_runs
SELECT count(*), min(created_ms), max(created_ms) FROM eoflow_workflows;

-- name: export_runs
-- One page of runs after a rowid, oldest first, with the filters of `eoflow journal export`.
SELECT rowid, workflow_id, name, status, inputs, output, error, created_ms, updated_ms,
       recovery_attempts, parent_id, queue
FROM eoflow_workflows
WHERE rowid > ?1 AND (?2 IS NULL OR updated_ms >= ?2) AND (?3 IS NULL OR status = ?3)
  AND (?4 IS NULL OR workflow_id = ?4)
ORDER BY rowid LIMIT ?5;

"""`eoflow journal copy SRC DEST`: a journal moved between backends (SQLite <-> PostgreSQL).

A laptop app graduates to a server, or a production journal comes to a laptop to be debugged.
Everything eoflow keeps is copied: runs (in the order they were created), steps, transaction
records, Kafka keys, offsets and topics, messages, events, quarantine, pending operator
requests and settings. The application's own tables are not eoflow's to move.

The source is read in one snapshot, and held as its engine would hold it: a copy made while an
engine runs misses what the engine does next, and if both journals were then run, messages and
runs would take effect twice. `live=True` copies a running journal anyway (to debug a snapshot,
never to run it). The destination is
opened as an engine opens it (created and migrated if need be, and owned for the duration, so
no engine writes there meanwhile) and must hold no journal data yet. Rows are written in
batches, through the destination's own group committer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from eoflow.errors import JournalError, JournalLockedError
from eoflow.journal.backend import Conn
from eoflow.journal.codec import MAGIC
from eoflow.journal.opening import open_journal, open_side, owned
from eoflow.journal.sqljournal import SqlJournal
from eoflow.journal.urls import redact

BATCH = 1000  # rows per write transaction

# Every eoflow table, its columns (the same on both backends) and the order rows are read in.
# eoflow_workflows is read in creation order (SQLite's rowid, PostgreSQL's seq), which the
# destination keeps by inserting in that order.
TABLES: list[tuple[str, str, str]] = [
    ("eoflow_workflows",
     "workflow_id, name, status, inputs, output, error, created_ms, updated_ms, "
     "recovery_attempts, progress_mark, parent_id, queue, lane, deadline_ms, priority, "
     "dedup_id, not_before_ms, timeout_ms, executor_id, dequeued_ms, app_version, "
     "trace_context",
     "{creation}"),
    ("eoflow_steps",
     "workflow_id, step, name, kind, output, error, attempts, started_ms, ended_ms",
     "workflow_id, step"),
    ("eoflow_tx_outputs", "workflow_id, step, name, output, error, ended_ms", "workflow_id, step"),
    ("eoflow_kafka_keys", "key, handler, applied_ms", "key"),
    ("eoflow_kafka_offsets", 'group_id, topic, partition, "offset", messages, updated_ms',
     "group_id, topic, partition"),
    ("eoflow_kafka_topics", "group_id, topic, topic_id, incarnation, updated_ms",
     "group_id, topic"),
    ("eoflow_quarantine",
     'key, group_id, topic, partition, "offset", handler, message_key, value, headers, '
     "timestamp_ms, error, attempts, quarantined_ms, status, raw", "key"),
    ("eoflow_messages", "destination, topic, message, created_ms", "seq"),
    ("eoflow_events", "workflow_id, key, value, updated_ms", "workflow_id, key"),
    ("eoflow_requests", "workflow_id, action, created_ms", "id"),
    ("eoflow_executors",
     "executor_id, host, pid, started_ms, heartbeat_ms, lease_ms, status, process_space, "
     "app_version",
     "executor_id"),
    ("eoflow_meta", "key, value", "key"),
]
INPUTS = 3  # the position of eoflow_workflows.inputs, whose type differs between backends


def copy(source: str, destination: str, progress: Callable[[str, int], None] | None = None,
         *, live: bool = False) -> dict[str, int]:
    """Copy the journal at `source` into `destination` (a path or a URL); returns the rows
    copied per table. `progress(table, rows)` follows each batch. Unless `live`, no engine may
    run on the source meanwhile."""
    if redact(source) == redact(destination):
        raise JournalError(redact(destination), "is the source itself; choose another")
    with contextlib.ExitStack() as held:
        if not live:
            try:
                held.enter_context(owned(source))
            except JournalLockedError as error:
                raise JournalError(redact(source), (
                    f"is in use by its engine ({error.owner}); stop it first, so that the copy "
                    "is whole and only one of the two is ever run, or pass --live to copy a "
                    "snapshot to look at")) from None
        return _copy(source, destination, progress)


def _copy(source: str, destination: str,
          progress: Callable[[str, int], None] | None) -> dict[str, int]:
    side = open_side(source)
    try:
        target = open_journal(destination)
        try:
            if not isinstance(target, SqlJournal):  # every journal is one today
                raise JournalError(redact(destination), "cannot be written by copy")
            _require_empty(target)
            side.backend.snapshot(side.conn)
            try:
                return {table: _copy_table(side, target, table, columns, order, progress)
                        for table, columns, order in TABLES}
            finally:
                side.conn.execute("ROLLBACK")  # the snapshot only read
        finally:
            target.close()
    finally:
        side.conn.close()


def _require_empty(target: SqlJournal) -> None:
    def counts(conn: Conn) -> dict[str, int]:
        return {table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                for table, _, _ in TABLES if table != "eoflow_meta"}

    held = {table: n for table, n in target.committer.read(counts).items() if n}
    if held:
        listed = ", ".join(f"{n} in {table}" for table, n in sorted(held.items()))
        raise JournalError(target.path, f"already holds journal data ({listed}); copy into an "
                                        "empty database or a new file")


def _copy_table(side: Any, target: SqlJournal, table: str, columns: str, order: str,
                progress: Callable[[str, int], None] | None) -> int:
    order = order.format(creation=side.backend.creation_order)
    select = f"SELECT {columns} FROM {table} ORDER BY {order}"
    width = columns.count(",") + 1
    insert = f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * width)})"
    if table == "eoflow_meta":  # the destination's schema version stays its own
        select = f"SELECT {columns} FROM {table} WHERE key <> 'schema_version' ORDER BY key"
        insert += " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    adapt = _inputs_for(target) if table == "eoflow_workflows" else None
    copied = 0
    for batch in _batches(side.backend.stream(side.conn, select)):
        rows = batch if adapt is None else [adapt(row) for row in batch]

        def write(conn: Conn, rows: list[tuple[Any, ...]] = rows) -> None:
            for row in rows:
                conn.execute(insert, row)

        target.committer.write(write, savepoint=True)
        copied += len(rows)
        if progress is not None:
            progress(table, copied)
    return copied


def _inputs_for(target: SqlJournal) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """Inputs as the destination keeps them: PostgreSQL as bytea, SQLite as text (JSON) or a
    BLOB (packed raw bytes, which start with MAGIC)."""
    def adapt(row: tuple[Any, ...]) -> tuple[Any, ...]:
        value = row[INPUTS]
        if isinstance(value, (bytes, memoryview)) and bytes(value[:4]) != MAGIC:
            value = bytes(value).decode()
        value = target.stored_inputs(value)
        return (*row[:INPUTS], value, *row[INPUTS + 1:])
    return adapt


def _batches(rows: Iterator[Any]) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(tuple(row))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch

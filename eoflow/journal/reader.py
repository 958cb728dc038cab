"""Read-only queries on a journal: what `eoflow status` and the engine's lookups use.

A reader sees only committed (durable) records and never blocks the engine (SQLite's WAL mode,
PostgreSQL's snapshots).
"""

from __future__ import annotations

import os
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar, cast

import apsw

from eoflow.errors import JournalError
from eoflow.journal.backend import Backend, Conn
from eoflow.journal.connection import SQLITE, connect, translate
from eoflow.journal.records import (
    ExecutorRecord,
    QuarantinedMessage,
    Status,
    StepKind,
    StepRecord,
    WorkflowRecord,
    executor_from_row,
)
from eoflow.journal.schema import require_journal
from eoflow.journal.sql import Q

T = TypeVar("T")

# The rows of the queries that return whole records, with the types queries.sql gives their
# columns. The drivers hand back untyped values; the casts below are where the schema's types
# are taken on trust, once per query, checking nothing at run time.
WorkflowRow = tuple[str, str, str, str | bytes, str | None, str | None, int, int, int, str | None,
                    str | None, str | None, int | None, int | None]
StepRow = tuple[str, int, str, str, str | None, str | None, int, int, int]
QuarantineRow = tuple[str, str, str, int, int, str, bytes | None, bytes | None, str, int | None,
                      str, int, int, str, bytes | None]


def workflow_from_row(row: Any) -> WorkflowRecord:
    r = cast(WorkflowRow, row)
    return WorkflowRecord(
        workflow_id=r[0], name=r[1], status=Status(r[2]), inputs=r[3], output=r[4],
        error=r[5], created_ms=r[6], updated_ms=r[7], recovery_attempts=r[8],
        parent_id=r[9], queue=r[10], lane=r[11], deadline_ms=r[12],
        not_before_ms=r[13], executor_id=row[14] if len(row) > 14 else None,
        app_version=row[15] if len(row) > 15 else None,
        trace_context=row[16] if len(row) > 16 else None,
    )


def step_from_row(row: Any) -> StepRecord:
    r = cast(StepRow, row)
    return StepRecord(
        workflow_id=r[0], step=r[1], name=r[2], kind=StepKind(r[3]), output=r[4],
        error=r[5], attempts=r[6], started_ms=r[7], ended_ms=r[8],
    )


def quarantined_from_row(row: Any) -> QuarantinedMessage:
    r = cast(QuarantineRow, row)
    return QuarantinedMessage(
        key=r[0], group_id=r[1], topic=r[2], partition=r[3], offset=r[4],
        handler=r[5], message_key=r[6], value=r[7], headers=r[8], timestamp_ms=r[9],
        error=r[10], attempts=r[11], quarantined_ms=r[12], status=r[13], raw=r[14],
    )


def _open_for_reading(path: str) -> apsw.Connection:
    """A read-only connection on a journal. On a read-only filesystem SQLite cannot create the
    WAL's shared-memory file: a journal whose WAL is empty (closed cleanly) is then read as an
    immutable file instead."""
    try:
        return _checked(connect(path, readonly=True), path)
    except JournalError as error:
        cause = error.__cause__
        wal = f"{path}-wal"
        clean = not os.path.exists(wal) or os.path.getsize(wal) == 0
        if not (isinstance(cause, (apsw.CantOpenError, apsw.ReadOnlyError)) and clean):
            raise
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?immutable=1"
    try:
        conn = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    except apsw.Error as error:
        raise translate(path, error) from error
    return _checked(conn, path)


def _checked(conn: apsw.Connection, path: str) -> apsw.Connection:
    try:
        require_journal(conn, path)
    except apsw.Error as error:
        conn.close()
        raise translate(path, error) from error
    except BaseException:
        conn.close()
        raise
    return conn


class Reader:
    """Queries over one connection that sees committed records only, on either backend."""

    def __init__(self, path: str, conn: Conn, backend: Backend) -> None:
        self.path = path  # a file's path, or a URL without its password
        self.backend = backend
        self._lock = threading.Lock()
        self._conn = conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _run(self, query: Callable[[Conn], T]) -> T:
        with self._lock:
            try:
                return query(self._conn)
            except self.backend.errors as error:
                raise self.backend.translate(self.path, error) from error

    def _all(self, name: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return self._run(lambda conn: conn.execute(Q[name], params).fetchall())

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """The rows of one ad-hoc read-only query (tools and benchmarks: they watch a running
        engine from here rather than through its writer, where a scan delays every commit)."""
        return self._run(lambda conn: conn.execute(sql, params).fetchall())

    def _count(self, name: str, params: tuple[Any, ...] = ()) -> int:
        """The one value of a query that counts (`SELECT count(*) ...`: never NULL)."""
        return int(cast(int, self._all(name, params)[0][0]))

    def get_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        rows = self._all("get_workflow", (workflow_id,))
        return workflow_from_row(rows[0]) if rows else None

    def load_steps(self, workflow_id: str) -> dict[int, StepRecord]:
        return {step.step: step for step in self.steps_of(workflow_id)}

    def steps_of(self, workflow_id: str) -> list[StepRecord]:
        return [step_from_row(row) for row in self._all("steps_of", (workflow_id,))]

    def list_workflows(
        self, status: Status | None = None, name: str | None = None, limit: int = 50,
        app_version: str | None = None,
    ) -> list[WorkflowRecord]:
        code = status.value if status is not None else None
        return [workflow_from_row(r) for r in self._all("list_workflows",
                                                        (code, name, limit, app_version))]


    def has_requests(self) -> bool:
        return bool(self._all("has_requests")[0][0])

    def pending_step_counts(self) -> dict[str, int]:
        return dict(cast(list[tuple[str, int]], self._all("step_counts_of_pending")))

    def count_by_status(self) -> dict[str, int]:
        rows = cast(list[tuple[str, int]], self._all("count_by_status"))
        return {status: count for status, count in rows}

    def count_by_name(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for name, status, count in cast(list[tuple[str, str, int]], self._all("count_by_name")):
            table.setdefault(name, {})[status] = count
        return table

    def recent_failures(self, limit: int = 5) -> list[tuple[str, str, str, str | None, int]]:
        rows = [tuple(row) for row in self._all("recent_failures", (limit,))]
        return cast(list[tuple[str, str, str, str | None, int]], rows)

    def finished_since(self, since_ms: int) -> int:
        return self._count("finished_since", (since_ms,))

    def kafka_offsets(self) -> list[tuple[str, str, int, int, int, int]]:
        rows = [tuple(row) for row in self._all("kafka_offsets")]
        return cast(list[tuple[str, str, int, int, int, int]], rows)

    def quarantined(self, status: str | None = "QUARANTINED", limit: int = 100
                    ) -> list[QuarantinedMessage]:
        return [quarantined_from_row(r) for r in self._all("list_quarantine", (status, limit))]

    def get_quarantined(self, key: str) -> QuarantinedMessage | None:
        rows = self._all("get_quarantine", (key,))
        return quarantined_from_row(rows[0]) if rows else None

    # -- what the durable primitives look up (committed data only) ----------------------------

    def get_event(self, workflow_id: str, key: str) -> str | None:
        rows = self._all("get_event", (workflow_id, key))
        return str(rows[0][0]) if rows else None

    def live_children(self, workflow_id: str) -> list[str]:
        return cast(list[str], [row[0] for row in self._all("live_children", (workflow_id,))])

    def latest_run_of(self, name: str, prefix: str) -> str | None:
        rows = self._all("latest_run_of", (name, prefix))
        return str(rows[0][0]) if rows else None

    def list_executors(self, limit: int = 50) -> list[ExecutorRecord]:
        """The executors that ran this journal, newest first, with the runs each owns."""
        if not self._run(lambda conn: self.backend.has_table(conn, "eoflow_executors")):
            return []  # a journal no engine of this version has opened yet
        return [executor_from_row(row) for row in self._all("list_executors", (limit,))]

    def live_runs_by_version(self) -> list[tuple[str | None, int, int]]:
        """(app version, PENDING runs, ENQUEUED runs) for each version with any."""
        rows = self._all("live_runs_by_version")
        return [(None if v is None else str(v), int(p), int(e)) for v, p, e in rows]

    def queue_running(self, queue: str) -> int:
        return self._count("queue_running", (queue,))

    def queue_depths(self) -> dict[str, int]:
        """ENQUEUED runs, per queue that has any."""
        return {str(q): int(n) for q, n in self._all("queue_depths", ())}

    def queue_next_due(self, queue: str, now_ms: int) -> int | None:
        value = self._all("queue_next_due", (queue, now_ms))[0][0]
        return None if value is None else int(value)


class SQLiteReader(Reader):
    """A reader of the SQLite journal at `path`, on a read-only connection of its own."""

    def __init__(self, path: str) -> None:
        super().__init__(path, _open_for_reading(path), SQLITE)

"""Read-only queries on a journal: what `eoflow status` and the engine's lookups use.

A reader sees only committed (durable) records and never blocks the engine (WAL mode).
"""

from __future__ import annotations

import os
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

import apsw

from eoflow.errors import JournalError
from eoflow.journal.connection import connect, translate
from eoflow.journal.records import (
    QuarantinedMessage,
    Status,
    StepKind,
    StepRecord,
    WorkflowRecord,
)
from eoflow.journal.schema import require_journal
from eoflow.journal.sql import Q

T = TypeVar("T")


def workflow_from_row(row: Any) -> WorkflowRecord:
    return WorkflowRecord(
        workflow_id=row[0], name=row[1], status=Status(row[2]), inputs=row[3], output=row[4],
        error=row[5], created_ms=row[6], updated_ms=row[7], recovery_attempts=row[8],
        parent_id=row[9], queue=row[10], lane=row[11], deadline_ms=row[12],
        not_before_ms=row[13],
    )


def step_from_row(row: Any) -> StepRecord:
    return StepRecord(
        workflow_id=row[0], step=row[1], name=row[2], kind=StepKind(row[3]), output=row[4],
        error=row[5], attempts=row[6], started_ms=row[7], ended_ms=row[8],
    )


def quarantined_from_row(row: Any) -> QuarantinedMessage:
    return QuarantinedMessage(
        key=row[0], group_id=row[1], topic=row[2], partition=row[3], offset=row[4],
        handler=row[5], message_key=row[6], value=row[7], headers=row[8], timestamp_ms=row[9],
        error=row[10], attempts=row[11], quarantined_ms=row[12], status=row[13],
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


class SQLiteReader:
    """Queries over one connection (its own, or a read-only one opened on `path`)."""

    def __init__(self, path: str, conn: apsw.Connection | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        if conn is None:
            conn = _open_for_reading(path)
        self._conn = conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _run(self, query: Callable[[apsw.Connection], T]) -> T:
        with self._lock:
            try:
                return query(self._conn)
            except apsw.Error as error:
                raise translate(self.path, error) from error

    def _all(self, name: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return self._run(lambda conn: conn.execute(Q[name], params).fetchall())

    def get_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        rows = self._all("get_workflow", (workflow_id,))
        return workflow_from_row(rows[0]) if rows else None

    def load_steps(self, workflow_id: str) -> dict[int, StepRecord]:
        return {row[1]: step_from_row(row) for row in self._all("steps_of", (workflow_id,))}

    def steps_of(self, workflow_id: str) -> list[StepRecord]:
        return [step_from_row(row) for row in self._all("steps_of", (workflow_id,))]

    def list_workflows(
        self, status: Status | None = None, name: str | None = None, limit: int = 50
    ) -> list[WorkflowRecord]:
        code = status.value if status is not None else None
        return [workflow_from_row(r) for r in self._all("list_workflows", (code, name, limit))]

    def runnable_workflows(self) -> list[WorkflowRecord]:
        return [workflow_from_row(row) for row in self._all("runnable_workflows")]

    def has_requests(self) -> bool:
        return bool(self._all("has_requests")[0][0])

    def pending_step_counts(self) -> dict[str, int]:
        return dict(self._all("step_counts_of_pending"))

    def count_by_status(self) -> dict[str, int]:
        return {status: count for status, count in self._all("count_by_status")}

    def count_by_name(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for name, status, count in self._all("count_by_name"):
            table.setdefault(name, {})[status] = count
        return table

    def recent_failures(self, limit: int = 5) -> list[tuple[str, str, str, str | None, int]]:
        return [tuple(row) for row in self._all("recent_failures", (limit,))]

    def finished_since(self, since_ms: int) -> int:
        return int(self._all("finished_since", (since_ms,))[0][0])

    def kafka_offsets(self) -> list[tuple[str, str, int, int, int, int]]:
        return [tuple(row) for row in self._all("kafka_offsets")]

    def quarantined(self, status: str | None = "QUARANTINED", limit: int = 100
                    ) -> list[QuarantinedMessage]:
        return [quarantined_from_row(r) for r in self._all("list_quarantine", (status, limit))]

    def get_quarantined(self, key: str) -> QuarantinedMessage | None:
        rows = self._all("get_quarantine", (key,))
        return quarantined_from_row(rows[0]) if rows else None

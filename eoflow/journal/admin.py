"""Operator changes to a journal from outside its engine (the CLI), safe while an engine runs.

Each change is one short IMMEDIATE transaction on a connection of its own: it updates the run's
status so that the next engine acts on it, and leaves a request row that a running engine picks
up within its poll interval (cancel a running run, start a resumed one).
"""

from __future__ import annotations

import time
from typing import Any

import apsw

from eoflow.errors import (
    QuarantineError,
    WorkflowConflictError,
    WorkflowNotFoundError,
    WorkflowStateError,
)
from eoflow.journal.connection import connect, translate
from eoflow.journal.records import Status
from eoflow.journal.schema import require_journal
from eoflow.journal.sql import Q

CANCELLABLE = ("PENDING", "ENQUEUED")
RESUMABLE = ("CANCELLED", "PARKED", "ENQUEUED", "PENDING")


def _now() -> int:
    return int(time.time() * 1000)


def _change(path: str, apply: Any) -> Any:
    conn = connect(path)
    try:
        require_journal(conn, path)
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = apply(conn)
            conn.execute("COMMIT")
            return result
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except apsw.Error as error:
        raise translate(path, error) from error
    finally:
        conn.close()


def _status(conn: Any, workflow_id: str) -> str:
    row = conn.execute(Q["workflow_name_status"], (workflow_id,)).fetchone()
    if row is None:
        raise WorkflowNotFoundError(workflow_id)
    return str(row[1])


def cancel(path: str, workflow_id: str) -> None:
    def apply(conn: Any) -> None:
        status = _status(conn, workflow_id)
        if status not in CANCELLABLE:
            raise WorkflowStateError(workflow_id, status, "cancel")
        pending = [workflow_id]
        while pending:  # the run and its live descendants
            current = pending.pop()
            conn.execute(Q["set_status"], (Status.CANCELLED.value, _now(), current))
            conn.execute(Q["insert_request"], (current, "cancel", _now()))
            pending.extend(row[0] for row in conn.execute(Q["live_children"], (current,)))

    _change(path, apply)


def resume(path: str, workflow_id: str) -> None:
    def apply(conn: Any) -> None:
        status = _status(conn, workflow_id)
        if status not in RESUMABLE:
            raise WorkflowStateError(workflow_id, status, "resume")
        conn.execute(Q["resume_workflow"], (None, _now(), workflow_id))
        conn.execute(Q["insert_request"], (workflow_id, "resume", _now()))

    _change(path, apply)


def fork(path: str, workflow_id: str, from_step: int, new_id: str) -> None:
    def apply(conn: Any) -> None:
        row = conn.execute(Q["get_workflow"], (workflow_id,)).fetchone()
        if row is None:
            raise WorkflowNotFoundError(workflow_id)
        if from_step < 1:
            raise WorkflowStateError(workflow_id, row[2], f"fork from step {from_step}")
        now = _now()
        conn.execute(Q["insert_workflow"], (new_id, row[1], "PENDING", row[3], now, now, None,
                                            None, None, None, 0, None, None))
        if not conn.changes():
            raise WorkflowConflictError(new_id, "an existing run", row[1])
        conn.execute(Q["copy_steps_before"], (new_id, workflow_id, from_step))
        conn.execute(Q["insert_request"], (new_id, "resume", now))

    _change(path, apply)


def request_quarantine_retry(path: str, key: str) -> None:
    def apply(conn: Any) -> None:
        if conn.execute(Q["get_quarantine"], (key,)).fetchone() is None:
            raise QuarantineError(key, "no quarantined message has this key")
        conn.execute(Q["insert_request"], (key, "retry_quarantined", _now()))

    _change(path, apply)

"""Operator changes to a journal from outside its engine (the CLI), safe while an engine runs.

Each change is one short IMMEDIATE transaction on a connection of its own, running the same
code as the engine's own actions (operator.py) and leaving a request row that a running engine
picks up within its poll interval.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

import apsw

from eoflow.errors import JournalError
from eoflow.journal import operator, retention
from eoflow.journal.connection import connect, translate
from eoflow.journal.retention import PruneReport
from eoflow.journal.schema import require_journal

T = TypeVar("T")


def _now() -> int:
    return time.time_ns() // 1_000_000


def _change(path: str, apply: Callable[[apsw.Connection], T]) -> T:
    conn = _open(path)
    try:
        require_journal(conn, path)
        return _transaction(path, conn, apply, keep=True)
    except apsw.Error as error:
        raise translate(path, error) from error
    finally:
        conn.close()


def _open(path: str) -> apsw.Connection:
    if not os.path.exists(path):  # a typo must not leave a new, empty file behind
        raise JournalError(path, "does not exist; check --journal (or EOFLOW_JOURNAL)")
    return connect(path)


def _transaction(path: str, conn: apsw.Connection, apply: Callable[[apsw.Connection], T],
                 keep: bool) -> T:
    """`apply(conn)` in one IMMEDIATE transaction, committed if `keep`, else rolled back."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = apply(conn)
            conn.execute("COMMIT" if keep else "ROLLBACK")
            return result
        except BaseException:
            if not conn.getautocommit():
                conn.execute("ROLLBACK")
            raise
    except apsw.Error as error:
        raise translate(path, error) from error


def prune(path: str, older_than: float, *, app_db: str | None = None,
          dry_run: bool = False) -> PruneReport:
    """What retention removes (retention.py), for what finished over `older_than` seconds
    ago, one short transaction per batch so that a running engine waits milliseconds at
    most. `dry_run` counts the same things and removes nothing."""
    conn = _open(path)
    app = None
    try:
        require_journal(conn, path)
        app = None if app_db is None else _open(app_db)

        def journal(work: Callable[[apsw.Connection], T]) -> T:
            return _transaction(path, conn, work, keep=not dry_run)

        def application(work: Callable[[apsw.Connection], T]) -> T:
            assert app is not None and app_db is not None
            return _transaction(app_db, app, work, keep=not dry_run)

        total = PruneReport()
        for report in retention.prune(journal, None if app is None else application,
                                      _now() - int(older_than * 1000)):
            total.add(report)
        return total
    finally:
        conn.close()
        if app is not None:
            app.close()


def cancel(path: str, workflow_id: str) -> None:
    _change(path, lambda conn: operator.cancel(conn, workflow_id, _now(), notify=True))


def resume(path: str, workflow_id: str) -> None:
    _change(path, lambda conn: operator.resume(conn, workflow_id, _now(), notify=True))


def fork(path: str, workflow_id: str, from_step: int, new_id: str) -> None:
    _change(path, lambda conn: operator.fork(conn, workflow_id, from_step, new_id, _now(),
                                             notify=True))


def request_quarantine_retry(path: str, key: str) -> None:
    _change(path, lambda conn: operator.request_quarantine_retry(conn, key, _now()))


def drop_quarantined(path: str, key: str) -> None:
    _change(path, lambda conn: operator.drop_quarantined(conn, key))


def request_quarantine_retries(path: str, handler: str | None, topic: str | None) -> list[str]:
    return _change(path, lambda conn: operator.request_quarantine_retries(conn, handler, topic,
                                                                         _now()))


def restart_topic(path: str, group_id: str, topic: str) -> int:
    return _change(path, lambda conn: operator.restart_topic(conn, group_id, topic, _now()))

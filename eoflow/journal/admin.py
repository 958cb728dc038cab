"""Operator changes to a journal from outside its engine (the CLI), safe while an engine runs.

Each change is one short write transaction on a connection of its own, running the same
code as the engine's own actions (operator.py) and leaving a request row that a running engine
picks up within its poll interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from eoflow.journal import operator, retention
from eoflow.journal.backend import Conn
from eoflow.journal.opening import Side, open_side
from eoflow.journal.retention import PruneReport

T = TypeVar("T")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _change(path: str, apply: Callable[[Conn], T]) -> T:
    side = open_side(path)
    try:
        return transaction(side, apply, keep=True)
    finally:
        side.conn.close()


def transaction(side: Side, apply: Callable[[Conn], T], keep: bool = True) -> T:
    """`apply(conn)` in one write transaction, committed if `keep`, else rolled back."""
    conn, backend = side.conn, side.backend
    try:
        backend.begin(conn)
        try:
            result = apply(conn)
            if keep:
                backend.commit(conn)
            else:
                conn.execute("ROLLBACK")
            return result
        except BaseException:
            if not conn.getautocommit():
                conn.execute("ROLLBACK")
            raise
    except backend.errors as error:
        raise backend.translate(side.where, error) from error


def prune(path: str, older_than: float, *, app_db: str | None = None,
          dry_run: bool = False) -> PruneReport:
    """What retention removes (retention.py), for what finished over `older_than` seconds
    ago, one short transaction per batch so that a running engine waits milliseconds at
    most. `dry_run` counts the same things and removes nothing."""
    journal_side = open_side(path)
    app = None
    try:
        app = None if app_db is None else open_side(app_db, tx_only=True)

        def journal(work: Callable[[Conn], T]) -> T:
            return transaction(journal_side, work, keep=not dry_run)

        def application(work: Callable[[Conn], T]) -> T:
            assert app is not None
            return transaction(app, work, keep=not dry_run)

        total = PruneReport()
        for report in retention.prune(journal, None if app is None else application,
                                      now_ms() - int(older_than * 1000)):
            total.add(report)
        return total
    finally:
        journal_side.conn.close()
        if app is not None:
            app.conn.close()


def cancel(path: str, workflow_id: str) -> None:
    _change(path, lambda conn: operator.cancel(conn, workflow_id, now_ms(), notify=True))


def resume(path: str, workflow_id: str, any_version: bool = False) -> None:
    """Resume a run; with `any_version`, for an engine of any version of the app to run."""
    def apply(conn: Conn) -> None:
        if any_version:
            operator.release(conn, workflow_id)
        operator.resume(conn, workflow_id, now_ms(), notify=True)

    _change(path, apply)


def release_version(path: str, version: str) -> int:
    """Let engines of any version run the live runs of `version`; how many there were."""
    return _change(path, lambda conn: operator.release(conn, version=version))


def fork(path: str, workflow_id: str, from_step: int, new_id: str) -> None:
    _change(path, lambda conn: operator.fork(conn, workflow_id, from_step, new_id, now_ms(),
                                             notify=True))


def request_quarantine_retry(path: str, key: str) -> None:
    _change(path, lambda conn: operator.request_quarantine_retry(conn, key, now_ms()))


def drop_quarantined(path: str, key: str) -> None:
    _change(path, lambda conn: operator.drop_quarantined(conn, key))


def request_quarantine_retries(path: str, handler: str | None, topic: str | None) -> list[str]:
    return _change(path, lambda conn: operator.request_quarantine_retries(conn, handler, topic,
                                                                         now_ms()))


def restart_topic(path: str, group_id: str, topic: str) -> int:
    return _change(path, lambda conn: operator.restart_topic(conn, group_id, topic, now_ms()))

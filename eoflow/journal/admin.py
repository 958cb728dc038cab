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
from eoflow.journal import operator
from eoflow.journal.connection import connect, translate
from eoflow.journal.schema import require_journal

T = TypeVar("T")


def _now() -> int:
    return time.time_ns() // 1_000_000


def _change(path: str, apply: Callable[[apsw.Connection], T]) -> T:
    if not os.path.exists(path):  # a typo must not leave a new, empty file behind
        raise JournalError(path, "does not exist; check --journal (or EOFLOW_JOURNAL)")
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


def cancel(path: str, workflow_id: str) -> None:
    _change(path, lambda conn: operator.cancel(conn, workflow_id, _now(), notify=True))


def resume(path: str, workflow_id: str) -> None:
    _change(path, lambda conn: operator.resume(conn, workflow_id, _now(), notify=True))


def fork(path: str, workflow_id: str, from_step: int, new_id: str) -> None:
    _change(path, lambda conn: operator.fork(conn, workflow_id, from_step, new_id, _now(),
                                             notify=True))


def request_quarantine_retry(path: str, key: str) -> None:
    _change(path, lambda conn: operator.request_quarantine_retry(conn, key, _now()))


def request_quarantine_retries(path: str, handler: str | None, topic: str | None) -> list[str]:
    return _change(path, lambda conn: operator.request_quarantine_retries(conn, handler, topic,
                                                                         _now()))


def restart_topic(path: str, group_id: str, topic: str) -> int:
    return _change(path, lambda conn: operator.restart_topic(conn, group_id, topic, _now()))

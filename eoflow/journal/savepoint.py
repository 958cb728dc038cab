"""One savepoint, as every write of the journal uses it: work that raises rolls back alone.

SQLite and PostgreSQL differ in what an error leaves behind. SQLite keeps the transaction (or,
after a full disk or an I/O error, ends it whole: then there is nothing to roll back to).
PostgreSQL keeps a failed transaction open and refuses every statement until a rollback to a
savepoint: so a function that caught a database error and returned normally leaves the batch
unusable. That case is caught here too, and raised as the function's own failure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from eoflow.errors import TransactionAbortedError
from eoflow.journal.backend import Backend, Conn

T = TypeVar("T")


def in_savepoint(conn: Conn, backend: Backend, name: str, work: Callable[[], T],
                 what: str = "a journal write") -> T:
    """`work()` under SAVEPOINT `name`; if it raises (or returns with the transaction aborted),
    roll back to the savepoint and raise. When the database has ended the whole transaction
    (conn.getautocommit()), there is nothing to roll back: the caller's batch is lost."""
    conn.execute(f"SAVEPOINT {name}")
    try:
        result = work()
        if not conn.getautocommit() and backend.aborted(conn):
            raise TransactionAbortedError(what)
    except BaseException:
        if not conn.getautocommit():
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
        raise
    conn.execute(f"RELEASE {name}")
    return result

"""What the journal's SQL code needs from a database, whichever it is (SQLite or PostgreSQL).

The journal's write functions (operator.py, primitive_ops.py, retention.py, the journal's own
methods) run on a `Conn`: apsw's connection as it is, or the PostgreSQL journal's thin wrapper
around psycopg's (pg.py), which speaks the same three calls and turns queries.sql's SQL into
PostgreSQL's. A `Backend` holds the few things that differ and are not SQL: how a write
transaction begins and commits, which errors the driver raises, and what they mean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from eoflow.errors import JournalError


class Rows(Protocol):
    """The result of `Conn.execute`: a cursor over the rows, if any."""

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """A connection as the journal's SQL code uses it (apsw.Connection's names)."""

    def execute(self, sql: str, params: Any = ..., /) -> Rows: ...

    def changes(self) -> int:
        """Rows changed by the last INSERT, UPDATE or DELETE."""
        ...

    def close(self) -> None: ...

    def getautocommit(self) -> bool:
        """True when no transaction is open any more: it ended (committed, or rolled back
        whole by the database after an error such as a full disk or a lost connection), so
        rolling back to a savepoint is impossible."""
        ...


@dataclass(frozen=True)
class Fence:
    """A query a write transaction must pass before anything it did may count: `check(row)`
    raises (ExecutorFencedError) on its first row when it does not. PostgreSQL sends it with
    the transaction's first statement, in the same round trip (see pg.py)."""

    sql: str
    params: tuple[Any, ...]
    check: Callable[[Any], None]


class Backend(Protocol):
    """The non-SQL differences between databases (one instance per kind of database)."""

    name: str
    errors: tuple[type[BaseException], ...]  # what the driver raises for database errors
    creation_order: str  # the column that orders eoflow_workflows by creation

    def snapshot(self, conn: Conn) -> None:
        """Open a read-only transaction in which every query sees the same moment."""
        ...

    def stream(self, conn: Conn, sql: str) -> Iterator[Any]:
        """The rows of `sql` a few at a time (in the open transaction), not all at once."""
        ...

    def has_table(self, conn: Conn, name: str) -> bool: ...

    def begin(self, conn: Conn, fence: Fence | None = None, shared: bool = False) -> None:
        """Open the write transaction of a batch; with a `fence`, checked before anything
        the transaction does can commit (after a failed check the transaction is gone).
        `shared`: the batch writes only what other engines' shared batches may write beside
        it (queries_pg.sql, write_lock_shared); a backend with one writer ignores it."""
        ...

    def commit(self, conn: Conn) -> None:
        """Commit it; raise a JournalError if the database did not (never return quietly
        after a rollback)."""
        ...

    def aborted(self, conn: Conn) -> bool:
        """True when the open transaction cannot go on (an error outside any savepoint)."""
        ...

    def translate(self, where: str, error: BaseException) -> JournalError:
        """A one-line JournalError, naming `where` (a path or a URL) and the fix."""
        ...

    def unique_violation(self, error: BaseException) -> bool: ...

    def pipelined(self, conn: Conn) -> AbstractContextManager[Callable[[], None]]:
        """Statements sent inside this block may go to the database together, their errors
        raised at its end (not at the statement): for work that is all redone, one by one,
        if anything in it fails. The block gets a function to call between items of work: it
        lets the database act on what was sent so far without waiting for it (PostgreSQL: a
        Sync), so that a process paused between items (SIGSTOP, a VM migration) leaves its
        session idle in a transaction, which the server's idle timeout can end, and not in
        the middle of a pipeline, which the server waits out for ever with the journal's
        write lock held (a takeover ends such a session too: postgres.py, claim_runs)."""
        ...

    def stored_inputs(self, inputs: str | bytes) -> str | bytes:
        """A run's inputs as this database's column holds them."""
        ...

    def integrity_problems(self, conn: Conn, quick: bool) -> list[str] | None:
        """What the database's own check of its pages finds (empty when sound), or None when
        it cannot be run from a connection (a server checks its own pages)."""
        ...

    def user_connection(self, conn: Conn) -> Any:
        """The connection a @transaction function gets (`eoflow.db()`): the driver's own."""
        ...

    def name_session(self, conn: Conn, executor_id: str) -> None:
        """Name `conn`'s server session after `executor_id` (again after a reconnect), where
        sessions have names: another engine that takes this one's runs over can then end it
        (end_sessions). SQLite has no sessions: nothing to do."""
        ...

    def end_sessions(self, conn: Conn, executor_ids: Sequence[str]) -> int:
        """End the sessions named after `executor_ids` that are inside a transaction, on
        `conn`'s database, from a connection of its own (`conn`'s writer may be waiting on
        their locks): their transactions roll back and their locks go. Returns how many."""
        ...

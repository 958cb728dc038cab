"""PostgreSQL through psycopg 3: the only module that imports the driver.

`PgConn` gives the journal's SQL code (written for queries.sql) the three calls it uses on
apsw's connection. Each query runs as queries_pg.sql has it, if that file names it, or else as
queries.sql has it; either way its placeholders (`?`, `?N`) become psycopg's. The connections
are in autocommit mode: the journal opens and commits its transactions itself (BEGIN, COMMIT),
as on SQLite.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from eoflow.errors import JournalError, JournalUnavailableError, JournalWriteError
from eoflow.journal.backend import Fence
from eoflow.journal.sql import Q, load
from eoflow.journal.urls import redact

QPG = load("queries_pg.sql")
_NAME_OF = {text: name for name, text in Q.items()}
_NUMBERED = re.compile(r"\?(\d+)")
# SQLite's planner is told which index to use where it would pick a worse one; PostgreSQL's
# planner picks for itself (and has no such clause).
_INDEXED_BY = re.compile(r"\s+INDEXED BY \w+")
log = logging.getLogger(__name__)


def connect(url: str, *, reconnect_any: bool = False) -> PgConn:
    """A connection in autocommit mode, named after this process (for the owner's message).
    It reconnects once lost (see PgConn.execute); `reconnect_any`: before any statement (a
    reader's, each its own transaction), else only before a BEGIN."""
    return PgConn(url, _open(url, redact(url)), redact(url), reconnect_any)


def _open(url: str, where: str) -> Any:
    name = f"eoflow pid {os.getpid()} on {socket.gethostname()}"[:63]
    try:
        return psycopg.connect(url, autocommit=True, application_name=name, connect_timeout=10)
    except psycopg.ProgrammingError as error:  # libpq's words may quote the URL's secrets
        raise JournalError(where, "is not a valid PostgreSQL URL; check --journal (see "
                                  "libpq's connection URIs)") from error
    except psycopg.Error as error:
        raise JournalUnavailableError(where, f"cannot connect ({_first_line(error)}); check the "
                                             "URL and that the server is running") from error


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def to_pg(sql: str) -> tuple[str, str, bool]:
    """(the query with psycopg placeholders, the query as it is for a call without parameters,
    whether its placeholders are numbered). queries_pg.sql's version wins over queries.sql's;
    SQLite's INDEXED BY clauses are left out."""
    name = _NAME_OF.get(sql)
    if name is not None and name in QPG:
        sql = QPG[name]
    sql = _INDEXED_BY.sub("", sql)
    numbered = _NUMBERED.search(sql) is not None
    text = sql.replace("%", "%%")
    text = _NUMBERED.sub(r"%(p\1)s", text) if numbered else text.replace("?", "%s")
    return text, sql, numbered


class PgConn:
    """A psycopg connection as the journal's SQL code uses it (see backend.Conn)."""

    __slots__ = ("raw", "where", "on_reconnect", "_url", "_reconnect_any", "_changes",
                 "_opening", "_fence")
    _cache: dict[str, tuple[str, str, bool]] = {}

    def __init__(self, url: str, raw: Any, where: str, reconnect_any: bool) -> None:
        self.raw = raw  # what @transaction functions get from eoflow.db()
        self.where = where
        self.on_reconnect: Callable[[PgConn], None] | None = None  # e.g. take ownership again
        self._url = url  # never shown: it may hold the password
        self._reconnect_any = reconnect_any
        self._changes = 0
        self._opening: tuple[str, ...] = ()  # a BEGIN not sent yet (see begin)
        self._fence: Fence | None = None

    def begin(self, *statements: str, fence: Fence | None = None) -> None:
        """Open a transaction with `statements` (BEGIN, then e.g. a lock) and its `fence`, on a
        new connection if this one was lost. They go to the server with the transaction's
        first statement, in one round trip (psycopg's pipeline mode): a write costs two round
        trips, not three. A failed fence rolls the transaction back and raises."""
        if self.raw.broken or self.raw.closed:
            self._reconnect()
        self._opening, self._fence = statements, fence

    def ready(self) -> Any:
        """The driver's connection, with the transaction's opening sent (before anything uses
        the connection directly: a @transaction function, a server-side cursor)."""
        if self._opening:
            self._open(None)
        return self.raw

    def _open(self, first: Callable[[], Any] | None) -> Any:
        """Send the opening, the fence and `first()`'s statement in one round trip; check the
        fence before `first`'s result is used. (If a statement fails, the transaction is lost
        anyway: the first one never runs inside a savepoint.)"""
        opening, fence = self._opening, self._fence
        self._opening, self._fence = (), None
        checked = result = None
        with self.raw.pipeline():
            for statement in opening:
                self.raw.execute(statement)
            if fence is not None:
                checked = self._run(*self._prepared(fence.sql), fence.params)
            if first is not None:
                result = first()
        if fence is not None:
            try:
                fence.check(checked.fetchone() if checked is not None else None)
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    self.raw.execute("ROLLBACK")
                raise
        return result

    def _prepared(self, sql: str) -> tuple[str, str, bool]:
        found = self._cache.get(sql)
        if found is None:
            found = self._cache[sql] = to_pg(sql)
        return found

    def execute(self, sql: str, params: Any = (), /) -> Any:
        if self._reconnect_any and (self.raw.broken or self.raw.closed):
            # The server went away (a restart, a network cut). A reader's statements are each
            # their own transaction; a writer reconnects only where a new one begins (begin):
            # whatever transaction was open is gone, and its callers were told.
            self._reconnect()
        text, bare, numbered = self._prepared(sql)
        if self._opening:
            cursor = self._open(lambda: self._run(text, bare, numbered, params))
        else:
            cursor = self._run(text, bare, numbered, params)
        self._changes = cursor.rowcount
        return cursor

    def _run(self, text: str, bare: str, numbered: bool, params: Any) -> Any:
        if not params:
            return self.raw.execute(bare)
        if numbered:
            return self.raw.execute(text, {f"p{i}": v for i, v in enumerate(params, 1)})
        return self.raw.execute(text, params)

    def changes(self) -> int:
        return max(self._changes, 0)

    def _reconnect(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.raw.close()
        self.raw = _open(self._url, self.where)  # JournalUnavailableError while still away
        log.warning("journal %s: reconnected to the server after losing it", self.where)
        if self.on_reconnect is not None:
            try:
                self.on_reconnect(self)  # e.g. ownership: never write without it
            except BaseException:
                self.raw.close()  # so that the next BEGIN tries again, from the start
                raise

    def getautocommit(self) -> bool:
        # In error (INERROR) the transaction is still there: a savepoint can be rolled back to.
        if self._opening:
            return False  # begun; the server hears of it with the next statement
        status = self.raw.info.transaction_status
        return status in (TransactionStatus.IDLE, TransactionStatus.UNKNOWN)

    def failed(self) -> bool:
        """True when the open transaction cannot go on (see Backend.aborted)."""
        return not self._opening and \
            self.raw.info.transaction_status != TransactionStatus.INTRANS

    def close(self) -> None:
        self.raw.close()

    def sibling(self) -> PgConn:
        """A new connection to the same database, in autocommit mode."""
        return PgConn(self._url, _open(self._url, self.where), self.where, False)


class PostgresBackend:
    """PostgreSQL's side of backend.Backend."""

    name = "postgresql"
    errors: tuple[type[BaseException], ...] = (psycopg.Error,)
    creation_order = "seq"

    def snapshot(self, conn: Any) -> None:
        conn.begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def stream(self, conn: Any, sql: str) -> Iterator[Any]:
        with conn.ready().cursor(name="eoflow_stream") as cursor:  # a server-side cursor
            cursor.execute(to_pg(sql)[1])
            yield from cursor

    def has_table(self, conn: Any, name: str) -> bool:
        return bool(conn.execute(QPG["has_table"], (name,)).fetchone()[0])

    def begin(self, conn: Any, fence: Fence | None = None, shared: bool = False) -> None:
        # BEGIN, then the journal's write lock (held to COMMIT), so that an operator's change
        # from the CLI and the engine's batches never interleave (SQLite's BEGIN IMMEDIATE does
        # the same); engines' `shared` batches run beside each other (queries_pg.sql).
        conn.begin("BEGIN", QPG["write_lock_shared" if shared else "write_lock"], fence=fence)

    def commit(self, conn: Any) -> None:
        # The server answers COMMIT in a failed transaction with a ROLLBACK, without an error.
        if conn.execute("COMMIT").statusmessage != "COMMIT":
            raise JournalWriteError(conn.where, "the server rolled the transaction back")

    def aborted(self, conn: Any) -> bool:
        return bool(conn.failed())

    def translate(self, where: str, error: BaseException) -> JournalError:
        if isinstance(error, JournalError):
            return error
        if isinstance(error, psycopg.errors.DiskFull):
            return JournalWriteError(where, "the server's disk is full; free space (nothing "
                                            "is lost)")
        if isinstance(error, psycopg.errors.InsufficientPrivilege):
            return JournalWriteError(where, f"{_first_line(error)}; grant the role access")
        if isinstance(error, psycopg.OperationalError):
            return JournalUnavailableError(where, f"lost the server ({_first_line(error)})")
        return JournalError(where, f"{type(error).__name__}: {_first_line(error)}")

    def unique_violation(self, error: BaseException) -> bool:
        return isinstance(error, psycopg.errors.UniqueViolation)

    @contextlib.contextmanager
    def pipelined(self, conn: Any) -> Iterator[Callable[[], None]]:
        # A Kafka batch's statements (its handlers' INSERTs) in one round trip, not one each;
        # a Sync between handlers (Backend.pipelined), which waits for no answer.
        with conn.ready().pipeline() as pipeline:
            yield pipeline.sync

    def stored_inputs(self, inputs: str | bytes) -> bytes:
        # bytea: JSON text as UTF-8, or packed bytes (the codec tells them apart).
        return inputs.encode() if isinstance(inputs, str) else inputs

    def integrity_problems(self, conn: Any, quick: bool) -> list[str] | None:
        return None  # the server checks its own pages (pg_amcheck does more)

    def user_connection(self, conn: Any) -> Any:
        return conn.ready()  # psycopg's connection: `%s` placeholders, as psycopg documents

    def name_session(self, conn: Any, executor_id: str) -> None:
        conn.execute(QPG["name_session"], (executor_id,))
        again = conn.on_reconnect

        def named(new: PgConn) -> None:
            if again is not None:
                again(new)
            new.execute(QPG["name_session"], (executor_id,))

        conn.on_reconnect = named

    def end_sessions(self, conn: Any, executor_ids: Sequence[str]) -> int:
        other = conn.sibling()
        try:
            return int(other.execute(QPG["end_named_sessions"],
                                     (list(executor_ids),)).fetchone()[0])
        finally:
            other.close()


POSTGRES = PostgresBackend()

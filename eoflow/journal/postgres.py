"""The PostgreSQL journal: the same SqlJournal on a server database (`--journal postgresql://...`).

The journal's tables live in the first schema of the connection's search_path (`public`, unless
the URL says otherwise: `?options=-csearch_path%3Dmyschema`), so that they never collide with
the application's. Many engines (processes, hosts) may run on one journal, each an executor with
a lease (executors.py); their writers hold a shared session advisory lock, which `eoflow journal
copy` takes whole while it copies. Schema migrations are numbered as on SQLite (their own
numbers: PostgreSQL's schema started at SQLite's sixth) and applied under an advisory lock, so
two processes starting at once migrate once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

from eoflow.errors import JournalError, JournalFormatError, JournalLockedError
from eoflow.journal.backend import Conn
from eoflow.journal.pg import POSTGRES, QPG, PgConn, connect
from eoflow.journal.records import WorkflowRecord
from eoflow.journal.sql import Q
from eoflow.journal.sqljournal import SqlJournal

log = logging.getLogger(__name__)
# The third is SQLite's eighth as it is: the same columns, the same types.
MIGRATIONS = [QPG["pg_migration_1"], QPG["pg_migration_2"], Q["migration_8"], Q["migration_9"]]
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: PgConn) -> int:
    """The journal's schema version (0 when this schema holds no journal yet)."""
    if not conn.execute(QPG["has_table"], ("eoflow_meta",)).fetchone()[0]:
        return 0
    row = conn.execute(Q["get_meta"], ("schema_version",)).fetchone()
    if row is None:
        raise JournalFormatError(conn.where, "has an eoflow_meta table but no schema version")
    version = int(row[0])
    if version > SCHEMA_VERSION:
        raise JournalFormatError(
            conn.where, f"was written by a newer eoflow (schema {version}; this eoflow reads "
                        f"up to {SCHEMA_VERSION}); upgrade eoflow")
    return version


def migrate(conn: PgConn, *, journal: bool = True) -> None:
    """Bring the journal to SCHEMA_VERSION in one transaction, one process at a time (with
    `journal` False: only the tables of an application database, its transaction records)."""
    conn.execute("BEGIN")
    try:
        conn.execute(QPG["migration_lock"])
        version = schema_version(conn) if journal else SCHEMA_VERSION
        for number in range(version, SCHEMA_VERSION):
            conn.execute(MIGRATIONS[number])
        if version != SCHEMA_VERSION:
            conn.execute(Q["set_meta"], ("schema_version", str(SCHEMA_VERSION)))
        conn.execute(QPG["tx_schema_1"])
        conn.execute(Q["tx_schema_2"])
        POSTGRES.commit(conn)
    except BaseException:
        if not conn.getautocommit():
            conn.execute("ROLLBACK")
        raise


def open_app_connection(url: str) -> PgConn:
    """The writer of an application database (`--app-db`): its transaction records' tables
    are created if need be (under the migration lock, like a journal's)."""
    return _checked(connect(url), lambda conn: migrate(conn, journal=False))


def require_journal(conn: PgConn) -> int:
    """For readers: fail clearly unless the database holds an eoflow journal."""
    version = schema_version(conn)
    if version == 0:
        raise JournalFormatError(conn.where, "holds no eoflow journal (no eoflow tables in its "
                                             "schema); check --journal")
    return version


def _take_ownership(conn: PgConn) -> None:
    """The journal to this session alone (a copy): no engine may be running on it."""
    if not conn.execute(QPG["try_owner_lock"]).fetchone()[0]:
        raise JournalLockedError(conn.where, _holder(conn))


def _join(conn: PgConn) -> None:
    """An engine's share of the journal: refused only while a copy holds it whole."""
    if not conn.execute(QPG["try_engine_lock"]).fetchone()[0]:
        raise JournalError(conn.where, f"is being copied by {_holder(conn)} (eoflow journal "
                                       "copy); start the engine once the copy is done")


def _holder(conn: PgConn) -> str:
    row = conn.execute(QPG["owner_of_lock"]).fetchone()
    return "unknown process" if row is None else \
        f"{row[0] or 'a session'} (server pid {row[2]}{', from ' + row[1] if row[1] else ''})"


class PostgresJournal(SqlJournal):
    """Open with `PostgresJournal.open(url)`; close exactly once. Many engines (processes,
    hosts) may run on one PostgreSQL journal: each is an executor (executors.py)."""

    exclusive = False
    _told_lapsed = False  # warned once that others' sessions cannot be ended

    @classmethod
    def open(cls, url: str) -> PostgresJournal:
        writer = reader = None
        try:
            writer = connect(url)
            try:
                migrate(writer)
                _join(writer)
            except POSTGRES.errors as error:
                raise POSTGRES.translate(writer.where, error) from error
            writer.on_reconnect = _join  # the lock went with the lost session
            reader = connect(url, reconnect_any=True)
            return cls(writer.where, writer, reader, POSTGRES)
        except BaseException:
            for conn in (writer, reader):
                if conn is not None:
                    conn.close()
            raise

    def register_executor(self, lease_ms: int, now_ms: int,
                          app_version: str | None = None) -> str:
        """As SqlJournal's; and the server ends this writer's session if it stays idle in a
        transaction (holding the journal's write lock) for a lease: an engine paused there
        (SIGSTOP, a VM migration) must not stop the others from taking its runs over."""
        executor_id = super().register_executor(lease_ms, now_ms, app_version)
        writer = cast(PgConn, self.committer.conn)

        def join(conn: PgConn) -> None:
            _join(conn)
            self._settle_session(conn, executor_id, lease_ms)

        writer.on_reconnect = join
        return executor_id

    def _settle_session(self, conn: Conn, executor_id: str, lease_ms: int) -> None:
        """The idle timeout, and the name other engines end the session by (end_lapsed_sessions),
        set in the batch that registers the executor: an engine paused once its registration
        is visible (ALIVE, so that its lease can run out) always has a session they can find.
        (Set in a batch of its own after it, a pause in between held the journal's write lock
        under a name nobody looked for, and every takeover waited: seen once in eight runs of
        the many-engines test.)"""
        conn.execute(f"SET idle_in_transaction_session_timeout = {int(lease_ms)}")
        conn.execute(QPG["name_session"], (executor_id,))

    def claim_runs(self, now_ms: int, if_any: bool = False
                   ) -> tuple[list[str], list[WorkflowRecord]]:
        """As SqlJournal's, once the writer sessions of the executors whose lease ran out are
        ended (queries_pg.sql, end_lapsed_sessions): the server's idle timeout misses a session
        paused in the middle of a pipeline, or in a transaction begun in one (README)."""
        if self.executor_id is not None:
            me = self.executor_id
            try:
                ended = int(self._run(lambda conn: conn.execute(
                    QPG["end_lapsed_sessions"], (me, now_ms)).fetchone()[0]))
            except JournalError as error:  # e.g. the role may not end others' sessions
                if not self._told_lapsed:
                    log.warning("journal %s: cannot end the sessions of engines whose lease ran "
                                "out (%s); one paused mid-statement can hold the journal until "
                                "it wakes up. Grant the role pg_signal_backend", self.path, error)
                    self._told_lapsed = True
            else:
                if ended:
                    log.warning("journal %s: ended %d server session(s) of engines whose lease "
                                "ran out, before taking their runs over", self.path, ended)
        return super().claim_runs(now_ms, if_any)


def hold_ownership(url: str) -> PgConn:
    """A connection holding the whole journal (for a copy) until it is closed: refused while
    an engine runs on it, and no engine starts meanwhile."""
    def check(conn: PgConn) -> None:
        require_journal(conn)
        _take_ownership(conn)

    return _checked(connect(url), check)


def open_reader_connection(url: str) -> PgConn:
    """A connection for reading a journal (`eoflow status`), checked to hold one."""
    return _checked(connect(url, reconnect_any=True), require_journal)


def _checked(conn: PgConn, check: Callable[[PgConn], object]) -> PgConn:
    """`conn` once `check(conn)` passed; closed, with a one-line error, if it failed."""
    try:
        check(conn)
    except POSTGRES.errors as error:
        conn.close()
        raise POSTGRES.translate(conn.where, error) from error
    except BaseException:
        conn.close()
        raise
    return conn

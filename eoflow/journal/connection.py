"""The one place where journal connections are opened, tuned and their errors translated."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import apsw

from eoflow.errors import (
    JournalError,
    JournalFormatError,
    JournalLockedError,
    JournalWriteError,
)
from eoflow.journal.backend import Conn, Fence

BUSY_TIMEOUT_MS = 10_000
# After a checkpoint, a WAL larger than this is truncated back to it: a burst (or a reader that
# held a snapshot through several checkpoints) does not leave a large file behind for good.
WAL_SIZE_LIMIT = 64 * 1024 * 1024
# Page cache of a writer, in KiB (SQLite's default is 2 MiB). A journal of millions of runs has
# indexes far larger than that, and every new run lands at a random place in the id index.
CACHE_KIB = 64 * 1024
DURABILITY_PRAGMAS = {"full": "FULL", "normal": "NORMAL"}


def translate(path: str, error: BaseException) -> JournalError:
    """Map an apsw error on the journal at `path` to a one-line JournalError with the fix."""
    if isinstance(error, JournalError):
        return error
    if isinstance(error, (apsw.NotADBError, apsw.CorruptError)):
        return JournalFormatError(
            path, "is not an eoflow journal (not a readable SQLite database)")
    if isinstance(error, apsw.ReadOnlyError):
        return JournalWriteError(
            path, "is read-only; check the file's and its folder's permissions")
    if isinstance(error, apsw.FullError):
        return JournalWriteError(
            path, "the disk is full; free space, then restart (nothing is lost)")
    if isinstance(error, apsw.BusyError):
        return JournalWriteError(path, "stayed locked by another process for too long; retry")
    if isinstance(error, apsw.CantOpenError):
        return JournalError(path, "cannot be opened; check that its folder exists and is writable")
    if isinstance(error, apsw.IOError):
        return JournalWriteError(path, f"I/O error ({error}); check the disk")
    return JournalError(path, f"{type(error).__name__}: {error}")


class SQLiteBackend:
    """SQLite's side of backend.Backend: apsw raises, BEGIN IMMEDIATE takes the write lock."""

    name = "sqlite"
    errors: tuple[type[BaseException], ...] = (apsw.Error,)
    creation_order = "rowid"

    def snapshot(self, conn: Conn) -> None:
        conn.execute("BEGIN")  # WAL: the first read fixes the snapshot

    def stream(self, conn: Conn, sql: str) -> Iterator[Any]:
        return iter(conn.execute(sql))  # apsw steps through the rows as they are read

    def has_table(self, conn: Conn, name: str) -> bool:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                            (name,)).fetchone() is not None

    def begin(self, conn: Conn, fence: Fence | None = None, shared: bool = False) -> None:
        conn.execute("BEGIN IMMEDIATE")  # one writer per file: `shared` changes nothing
        if fence is not None:
            try:
                fence.check(conn.execute(fence.sql, fence.params).fetchone())
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def commit(self, conn: Conn) -> None:
        conn.execute("COMMIT")

    def aborted(self, conn: Conn) -> bool:
        return conn.getautocommit()  # SQLite rolls the whole transaction back, or nothing

    def translate(self, where: str, error: BaseException) -> JournalError:
        return translate(where, error)

    def unique_violation(self, error: BaseException) -> bool:
        return isinstance(error, apsw.ConstraintError)

    def pipelined(self, conn: Conn) -> contextlib.AbstractContextManager[Callable[[], None]]:
        return contextlib.nullcontext(_nothing)  # in-process calls: nothing to gain

    def stored_inputs(self, inputs: str | bytes) -> str | bytes:
        return inputs  # TEXT for JSON, a BLOB for packed bytes

    def integrity_problems(self, conn: Conn, quick: bool) -> list[str] | None:
        pragma = "PRAGMA quick_check" if quick else "PRAGMA integrity_check"
        return [line for (message,) in conn.execute(pragma)
                for line in str(message).splitlines()
                if line != "ok" and not line.startswith("*** in database")]

    def user_connection(self, conn: Conn) -> Conn:
        return conn  # apsw's connection is the journal's and the user's alike

    def name_session(self, conn: Conn, executor_id: str) -> None:
        pass  # one engine per file, in one process: no session for another to end

    def end_sessions(self, conn: Conn, executor_ids: Sequence[str]) -> int:
        return 0


SQLITE = SQLiteBackend()


def connect(path: str, *, readonly: bool = False, durability: str = "full") -> apsw.Connection:
    """Open the journal (or app database) at `path` with eoflow's pragmas.

    Writers get WAL (readers never block the engine, and the engine never blocks `eoflow status`)
    and `synchronous` = FULL by default, so a committed record survives power loss.
    """
    if readonly:
        if not os.path.exists(path):
            raise JournalError(path, "does not exist; check --journal (or EOFLOW_JOURNAL)")
        flags = apsw.SQLITE_OPEN_READONLY
    else:
        flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    try:
        conn = apsw.Connection(path, flags=flags)
        conn.setbusytimeout(BUSY_TIMEOUT_MS)
        conn.execute("PRAGMA schema_version").fetchall()  # fails at once on a non-database
        if not readonly:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchall()[0][0]
            if str(mode).lower() != "wal":
                raise JournalError(path, f"cannot switch to WAL mode (got {mode})")
            conn.execute(f"PRAGMA synchronous={DURABILITY_PRAGMAS[durability]}")
            conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            conn.execute("PRAGMA foreign_keys=ON")
    except apsw.Error as error:
        raise translate(path, error) from error
    return conn


class OwnerLock:
    """An exclusive advisory lock that makes one engine the only writer-owner of a journal.

    The lock is held on `<journal>.lock` with flock, so the kernel releases it when the owning
    process dies, even by SIGKILL: a crashed engine never leaves a stale lock behind.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock_path = f"{path}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        writable = True
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS) or \
                    not os.path.exists(self.lock_path):
                raise JournalError(
                    self.path, f"cannot create its lock file ({error.strerror})") from error
            # An unwritable lock file still locks (flock needs no write access); the journal
            # itself then reports whether it can be written.
            fd, writable = os.open(self.lock_path, os.O_RDONLY), False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                raise JournalLockedError(self.path, owner) from error
            raise JournalError(self.path, f"cannot lock it ({error.strerror})") from error
        if writable:  # who holds it, for the error message of the next engine
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _nothing() -> None:
    """SQLite's step between items of pipelined work (Backend.pipelined): there is none."""

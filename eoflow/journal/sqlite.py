"""The SQLite journal (apsw): the engine's default store, one file, owned by one engine at a time.

The logic is SqlJournal's; this module opens the file's two connections (a writer and a reader
that sees only committed records) under the owner lock, and releases the lock on close.
"""

from __future__ import annotations

import apsw

from eoflow.journal.connection import SQLITE, OwnerLock, connect, translate
from eoflow.journal.schema import migrate
from eoflow.journal.sqljournal import SqlJournal


class SQLiteJournal(SqlJournal):
    """Open with `SQLiteJournal.open(path)`; close exactly once."""

    def __init__(self, path: str, lock: OwnerLock, writer: apsw.Connection,
                 reader: apsw.Connection) -> None:
        super().__init__(path, writer, reader, SQLITE)
        self._owner = lock

    @classmethod
    def open(cls, path: str, durability: str = "full") -> SQLiteJournal:
        lock = OwnerLock(path)
        lock.acquire()
        writer = reader = None
        try:
            writer = connect(path, durability=durability)
            try:
                migrate(writer, path)
            except apsw.Error as error:
                raise translate(path, error) from error
            reader = connect(path, durability=durability)
            return cls(path, lock, writer, reader)
        except BaseException:
            for conn in (writer, reader):
                if conn is not None:
                    conn.close()
            lock.release()
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._owner.release()

"""A separate application database for @transaction functions (`Engine(app_db=...)`)."""

from __future__ import annotations

import apsw

from eoflow.journal.batching import GroupCommitter
from eoflow.journal.connection import SQLITE, connect, translate
from eoflow.journal.schema import ensure_tx_schema
from eoflow.journal.txstore import SqlTxStore


class AppDatabase:
    """Holds the application's tables, `eoflow_tx_outputs` and `eoflow_kafka_keys`."""

    def __init__(self, path: str, conn: apsw.Connection) -> None:
        self.path = path
        self.committer = GroupCommitter(conn, path, SQLITE)
        self.tx = SqlTxStore(self.committer, in_journal=False)

    @classmethod
    def open(cls, path: str, durability: str = "full") -> AppDatabase:
        conn = connect(path, durability=durability)
        try:
            ensure_tx_schema(conn)
        except apsw.Error as error:
            conn.close()
            raise translate(path, error) from error
        return cls(path, conn)

    def close(self) -> None:
        self.committer.close()
        self.committer.conn.close()

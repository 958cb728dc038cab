"""A separate application database for @transaction functions (`Engine(app_db=...)`): a SQLite
file, or a PostgreSQL URL."""

from __future__ import annotations

import apsw

from eoflow.journal.backend import Backend, Conn
from eoflow.journal.batching import GroupCommitter
from eoflow.journal.connection import SQLITE, connect, translate
from eoflow.journal.opening import postgres_module
from eoflow.journal.schema import ensure_tx_schema
from eoflow.journal.txstore import SqlTxStore
from eoflow.journal.urls import is_url, redact


class AppDatabase:
    """Holds the application's tables, `eoflow_tx_outputs` and `eoflow_kafka_keys`."""

    def __init__(self, path: str, conn: Conn, backend: Backend = SQLITE) -> None:
        self.path = path  # a URL without its password
        self.committer = GroupCommitter(conn, path, backend)
        self.tx = SqlTxStore(self.committer, in_journal=False)

    @classmethod
    def open(cls, target: str, durability: str = "full") -> AppDatabase:
        if is_url(target):
            postgres = postgres_module(target)
            return cls(redact(target), postgres.open_app_connection(target), postgres.POSTGRES)
        conn = connect(target, durability=durability)
        try:
            ensure_tx_schema(conn)
        except apsw.Error as error:
            conn.close()
            raise translate(target, error) from error
        return cls(target, conn)

    def close(self) -> None:
        self.committer.close()
        self.committer.conn.close()

"""Opening a journal by where it lives: a `postgresql://` URL, or else a SQLite file's path."""

from __future__ import annotations

from eoflow.errors import JournalError
from eoflow.journal.interface import Journal
from eoflow.journal.sqlite import SQLiteJournal
from eoflow.journal.urls import is_url, redact


def open_journal(target: str, durability: str = "full") -> Journal:
    """The engine's journal at `target`. `durability` is SQLite's: a PostgreSQL journal is as
    durable as its server's settings make a commit (synchronous_commit)."""
    if is_url(target):
        try:
            from eoflow.journal.postgres import PostgresJournal
        except ImportError as error:  # the core install has no PostgreSQL driver
            raise JournalError(redact(target), "needs the PostgreSQL driver; install it with "
                                               "pip install 'eoflow[postgres]'") from error
        return PostgresJournal.open(target)
    return SQLiteJournal.open(target, durability)

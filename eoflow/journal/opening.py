"""Opening a journal by where it lives: a `postgresql://` URL, or else a SQLite file's path.

The engine opens the journal itself (`open_journal`); the CLI opens a reader (`open_reader`) or
a short connection of its own for an operator's change (`open_side`), beside a running engine.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from types import ModuleType
from typing import NamedTuple

from eoflow.errors import JournalError
from eoflow.journal.backend import Backend, Conn
from eoflow.journal.connection import SQLITE, OwnerLock, connect
from eoflow.journal.interface import Journal
from eoflow.journal.reader import Reader, SQLiteReader
from eoflow.journal.schema import require_journal
from eoflow.journal.sqlite import SQLiteJournal
from eoflow.journal.urls import is_url, redact


class Side(NamedTuple):
    """A connection of the CLI's own on a journal that holds one."""

    conn: Conn
    backend: Backend
    where: str  # the path, or the URL without its password


def open_journal(target: str, durability: str = "full") -> Journal:
    """The engine's journal at `target`. `durability` is SQLite's: a PostgreSQL journal is as
    durable as its server's settings make a commit (synchronous_commit)."""
    if is_url(target):
        journal: Journal = postgres_module(target).PostgresJournal.open(target)
        return journal
    return SQLiteJournal.open(target, durability)


def open_reader(target: str) -> Reader:
    """A reader of the journal at `target` that sees committed records only."""
    if is_url(target):
        postgres = postgres_module(target)
        return Reader(redact(target), postgres.open_reader_connection(target), postgres.POSTGRES)
    return SQLiteReader(target)


def open_side(target: str, *, tx_only: bool = False, readonly: bool = False) -> Side:
    """A connection on the journal at `target` (which must hold one), or with `tx_only` on an
    application database (which holds transaction records only). `readonly`: a SQLite file is
    opened read-only (a PostgreSQL reader simply writes nothing)."""
    if is_url(target):
        postgres = postgres_module(target)
        conn = postgres.connect(target) if tx_only else postgres.open_reader_connection(target)
        return Side(conn, postgres.POSTGRES, redact(target))
    if not os.path.exists(target):  # a typo must not leave a new, empty file behind
        raise JournalError(target, "does not exist; check --journal (or EOFLOW_JOURNAL)")
    conn = connect(target, readonly=readonly)
    try:
        if not tx_only:
            require_journal(conn, target)
    except BaseException as error:
        conn.close()
        if isinstance(error, SQLITE.errors):
            raise SQLITE.translate(target, error) from error
        raise
    return Side(conn, SQLITE, target)


@contextlib.contextmanager
def owned(target: str) -> Iterator[None]:
    """Hold the owner lock of the journal at `target`, as its engine would: none runs on it
    meanwhile. JournalLockedError names the engine that holds it now."""
    if is_url(target):
        conn = postgres_module(target).hold_ownership(target)
        try:
            yield
        finally:
            conn.close()
        return
    lock = OwnerLock(target)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def postgres_module(target: str) -> ModuleType:
    """The PostgreSQL journal's module, imported only when a URL asks for it."""
    try:
        from eoflow.journal import postgres
    except ImportError as error:  # the core install has no PostgreSQL driver
        raise JournalError(redact(target), "needs the PostgreSQL driver; install it with "
                                           "pip install 'eoflow[postgres]'") from error
    return postgres

"""Schema versions and migrations, applied when a journal is opened for writing.

The version lives in the `eoflow_meta` table rather than `PRAGMA user_version`: by default the
journal file also holds the application's own tables, and applications often use user_version
for their own migrations. Migrations are numbered SQL sections (migration_1, migration_2, ...).
"""

from __future__ import annotations

import apsw

from eoflow.errors import JournalFormatError
from eoflow.journal.sql import Q

MIGRATIONS = [Q["migration_1"], Q["migration_2"], Q["migration_3"], Q["migration_4"],
              Q["migration_5"], Q["migration_6"], Q["migration_7"], Q["migration_8"],
              Q["migration_9"]]
SCHEMA_VERSION = len(MIGRATIONS)


def has_table(conn: apsw.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,))
    return row.fetchone() is not None


def schema_version(conn: apsw.Connection, path: str) -> int:
    """The journal's schema version (0 when no journal has been created in this file yet)."""
    if not has_table(conn, "eoflow_meta"):
        return 0
    row = conn.execute(Q["get_meta"], ("schema_version",)).fetchone()
    if row is None:
        raise JournalFormatError(path, "has an eoflow_meta table but no schema version")
    version = int(row[0])
    if version > SCHEMA_VERSION:
        raise JournalFormatError(
            path,
            f"was written by a newer eoflow (schema {version}; this eoflow reads up to "
            f"{SCHEMA_VERSION}); upgrade eoflow",
        )
    return version


def ensure_tx_schema(conn: apsw.Connection) -> None:
    """The tables of whichever database runs @transaction functions (idempotent)."""
    conn.execute(Q["tx_schema_1"])
    conn.execute(Q["tx_schema_2"])


def migrate(conn: apsw.Connection, path: str) -> None:
    """Bring the journal at `path` to SCHEMA_VERSION in one IMMEDIATE transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(conn, path)
        for number in range(version, SCHEMA_VERSION):
            conn.execute(MIGRATIONS[number])
        if version != SCHEMA_VERSION:
            conn.execute(Q["set_meta"], ("schema_version", str(SCHEMA_VERSION)))
        ensure_tx_schema(conn)
        conn.execute("COMMIT")
    except BaseException:
        if not conn.getautocommit():
            conn.execute("ROLLBACK")
        raise


def require_journal(conn: apsw.Connection, path: str) -> int:
    """For readers: fail clearly unless `path` holds an eoflow journal; return its version."""
    version = schema_version(conn, path)
    if version == 0:
        raise JournalFormatError(
            path, "is not an eoflow journal (no eoflow tables); check --journal"
        )
    return version

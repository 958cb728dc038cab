"""SQL in tests' @transaction bodies, written once for both backends."""

from __future__ import annotations

from typing import Any

import eoflow


def app_sql(sql: str, params: tuple[Any, ...] = ()) -> Any:
    """Run `sql` (SQLite's `?` placeholders) on `eoflow.db()`: apsw's connection as it is,
    psycopg's with its `%s` placeholders (what an app on PostgreSQL writes itself)."""
    conn = eoflow.db()
    if type(conn).__module__.startswith("psycopg"):
        sql = sql.replace("?", "%s").replace(" BLOB", " BYTEA")
    return conn.execute(sql, params)


def journal_sql(target: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run `sql` (`?` placeholders) on a journal directly, beside a running engine: a SQLite
    file through apsw, a PostgreSQL URL through psycopg. Returns the rows, if any."""
    if target.startswith(("postgresql://", "postgres://")):
        import psycopg
        with psycopg.connect(target, autocommit=True) as pg:
            cursor = pg.execute(sql.replace("?", "%s"), params or None)
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
    import apsw
    conn = apsw.Connection(target)
    conn.setbusytimeout(5000)  # the engine may be writing
    try:
        return [tuple(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()

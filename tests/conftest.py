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


@pytest.fixture
def journal_path(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh SQLite journal's path, or with EOFLOW_TEST_JOURNAL=postgres a fresh PostgreSQL
    database's URL (to run the engine's tests on that backend by hand)."""
    if os.environ.get("EOFLOW_TEST_JOURNAL") == "postgres":
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

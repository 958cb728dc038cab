"""The PostgreSQL server restarts under load: the engine reconnects, loses nothing, and applies
no transaction twice (an unknown COMMIT is settled by the run's record, on replay)."""

from __future__ import annotations

import collections
import logging
import threading
import time

import pytest

from eoflow import Engine, Status, step, transaction, workflow
from tests import pgserver
from tests.portable import app_sql, journal_sql

RUNS = 300
STEPS: collections.Counter[int] = collections.Counter()
LOCK = threading.Lock()


@step()
def rs_work(i: int) -> int:
    with LOCK:
        STEPS[i] += 1
    time.sleep(0.01)
    return i * 2


@transaction()
def rs_record(i: int, value: int) -> None:
    app_sql("INSERT INTO rs_done (id, value) VALUES (?, ?)", (i, value))


@workflow()
def rs_flow(i: int) -> int:
    value = rs_work(i)
    rs_record(i, value)
    return rs_work(i + RUNS)


@transaction()
def rs_tables() -> None:
    app_sql("CREATE TABLE IF NOT EXISTS rs_done (id INTEGER, value INTEGER)")  # no key: a
    # transaction applied twice would show as two rows


def test_a_server_restart_under_load_loses_and_repeats_nothing(
        pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    STEPS.clear()
    with Engine(journal=pg_url, workers=16) as engine:
        rs_tables()
        handles = [engine.start(rs_flow, i, workflow_id=f"rs-{i}") for i in range(RUNS)]
        deadline = time.monotonic() + 30
        while len(journal_sql(pg_url, "SELECT id FROM rs_done")) < RUNS // 5:
            assert time.monotonic() < deadline, "no progress before the restart"
            time.sleep(0.01)
        pgserver.restart()  # mid-stream: some runs are between steps, some inside a commit
        results = [h.result(timeout=120) for h in handles]
    assert results == [2 * (i + RUNS) for i in range(RUNS)]
    done = journal_sql(pg_url, "SELECT id, count(*) FROM rs_done GROUP BY id")
    assert sorted(done) == [(i, 1) for i in range(RUNS)]  # each transaction exactly once
    statuses = journal_sql(pg_url, "SELECT status, count(*) FROM eoflow_workflows GROUP BY 1")
    assert statuses == [(Status.SUCCESS.value, RUNS)]
    assert "reconnected to the server" in caplog.text  # the engine said what happened
    assert "could not record" in caplog.text or "rolled back" in caplog.text

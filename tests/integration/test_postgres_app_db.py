"""`--app-db postgresql://...`: the application's tables and transaction records in a PostgreSQL
database apart from the journal (itself a SQLite file or another PostgreSQL database)."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import eoflow
from eoflow import Engine, step, transaction, workflow
from eoflow.cli.main import cli
from tests import pgserver
from tests.portable import journal_sql


@step()
def ad_price(x: int) -> int:
    return x * 10


@transaction()
def ad_charge(order: str, cents: int) -> int:
    eoflow.db().execute("INSERT INTO ad_charges VALUES (%s, %s)", (order, cents))
    return cents


@workflow()
def ad_order(order: str, x: int) -> int:
    return ad_charge(order, ad_price(x))


@pytest.mark.parametrize("journal_kind", ["sqlite", "postgres"])
def test_an_app_db_url_holds_the_data_and_the_transaction_records(
        tmp_path: Path, pg_url: str, journal_kind: str) -> None:
    journal = str(tmp_path / "journal.db") if journal_kind == "sqlite" else pg_url
    app_db = pgserver.fresh_database()
    journal_sql(app_db, "CREATE TABLE ad_charges (id TEXT PRIMARY KEY, cents INTEGER)")
    with Engine(journal=journal, app_db=app_db) as engine:
        assert engine.run(ad_order, "o1", 4, workflow_id="o1") == 40
        assert engine.run(ad_order, "o1", 4, workflow_id="o1") == 40  # recorded: not again
        assert [(s.name, s.kind.value) for s in engine.journal.steps_of("o1")] == [
            ("ad_price", "step"), ("ad_charge", "transaction")]
    assert journal_sql(app_db, "SELECT id, cents FROM ad_charges") == [("o1", 40)]
    assert journal_sql(app_db, "SELECT workflow_id, step, name FROM eoflow_tx_outputs") == [
        ("o1", 2, "ad_charge")]
    for args in (["journal", "check", "--app-db", app_db],
                 ["journal", "prune", "--older-than", "1d", "--app-db", app_db]):
        result = CliRunner().invoke(cli, [*args, "--journal", journal])
        assert result.exit_code == 0, result.output


LONG_HOST = "worker-7f9c4d8b6-x2k4p.orders-consumer.eu-west-1.compute.internal"


def test_a_session_named_after_an_executor_of_a_non_ascii_host_is_ended() -> None:
    """The server keeps only printable ASCII in a session's name and escapes the rest: an
    executor whose host name is not ASCII is still found by its name's digest."""
    import psycopg

    from eoflow.journal.appdb import AppDatabase
    from eoflow.journal.pg import QPG, to_pg

    app_db = pgserver.fresh_database()
    executor_id = "hôte-büro:1:a1b2c3"
    named = psycopg.connect(app_db)
    app = AppDatabase.open(app_db)
    try:
        text, _, _ = to_pg(QPG["name_session"])
        named.execute(text, {"p1": executor_id})  # as the engine's writer names itself
        named.execute("SELECT 1")  # idle in its transaction (psycopg begins one)
        assert app.tx.end_sessions(["hôte-büro:1:d4e5f6"]) == 0  # another process of it
        assert app.tx.end_sessions([executor_id]) == 1
    finally:
        app.close()
        with contextlib.suppress(Exception):
            named.close()


def test_a_session_named_as_engines_before_named_themselves_is_ended_too() -> None:
    """An engine of the previous version (a rolling upgrade) named its session
    'eoflow <executor id>': a takeover by this version still ends it."""
    import psycopg

    from eoflow.journal.appdb import AppDatabase

    app_db = pgserver.fresh_database()
    older = psycopg.connect(app_db, application_name="eoflow host:9:0ld0ld")
    app = AppDatabase.open(app_db)
    try:
        older.execute("SELECT 1")  # idle in its transaction (psycopg begins one)
        assert app.tx.end_sessions(["host:9:0ld0ld"]) == 1
    finally:
        app.close()
        with contextlib.suppress(Exception):
            older.close()


def test_an_app_db_session_named_after_an_executor_is_ended_with_its_locks() -> None:
    """A writer holding a row lock in the application database (an engine paused inside a
    transaction there) is ended by its executor's name, from a connection of its own: the
    writer waiting on that lock goes on, and another executor's name ends nothing."""
    from eoflow.journal.appdb import AppDatabase

    app_db = pgserver.fresh_database()
    journal_sql(app_db, "CREATE TABLE ad_locks (id TEXT PRIMARY KEY)")
    paused_db, other_db = AppDatabase.open(app_db), AppDatabase.open(app_db)
    holding, wake, took = threading.Event(), threading.Event(), threading.Event()

    def hold(conn: Any) -> None:
        conn.execute("INSERT INTO ad_locks VALUES ('k')")
        holding.set()
        wake.wait(30)

    def paused() -> None:
        with contextlib.suppress(Exception):  # its session is ended under it
            paused_db.tx.run_plain(hold)

    def other() -> None:
        other_db.tx.run_plain(
            lambda conn: conn.execute("INSERT INTO ad_locks VALUES ('k') ON CONFLICT DO NOTHING"))
        took.set()

    threads = [threading.Thread(target=paused), threading.Thread(target=other)]
    try:
        paused_db.tx.name_session(f"{LONG_HOST}:1:a1b2c3")
        threads[0].start()
        assert holding.wait(10)
        threads[1].start()
        assert not took.wait(0.5)  # it waits on the paused writer's lock
        assert other_db.tx.end_sessions(["host:2:someone-else"]) == 0
        # The same long host and pid, another process: the names the server keeps (63 bytes)
        # must still differ (red when the name began with the id and was cut).
        assert other_db.tx.end_sessions([f"{LONG_HOST}:1:d4e5f6"]) == 0
        assert not took.wait(0.3)
        assert other_db.tx.end_sessions([f"{LONG_HOST}:1:a1b2c3"]) == 1
        assert took.wait(5), "the lock outlived the session"
    finally:
        wake.set()
        for thread in threads:
            thread.join(10)
        paused_db.close()
        other_db.close()
    assert journal_sql(app_db, "SELECT id FROM ad_locks") == [("k",)]


AD_HOLDING, AD_WAKE = threading.Event(), threading.Event()


@transaction()
def ad_hold(key: str) -> None:
    eoflow.db().execute("INSERT INTO ad_held VALUES (%s) ON CONFLICT DO NOTHING", (key,))
    if not AD_HOLDING.is_set():  # the first time only: then it is "paused" holding the row
        AD_HOLDING.set()
        AD_WAKE.wait(30)


@workflow()
def ad_held(key: str) -> None:
    ad_hold(key)


@transaction()
def ad_take(key: str) -> None:
    eoflow.db().execute("INSERT INTO ad_held VALUES (%s) ON CONFLICT DO NOTHING", (key,))


@workflow()
def ad_taking(key: str) -> None:
    ad_take(key)


def test_a_takeover_ends_the_app_db_session_of_an_engine_paused_in_a_transaction(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine stops renewing its lease while its @transaction holds a row of the
    application database: the engine that takes its runs over also ends that session, so
    its own transaction on the same row goes on instead of waiting until the other wakes.
    The taker has one worker, which the run it took over keeps waiting on that lock: the
    session must be ended from elsewhere (red when it was a task for the workers)."""
    from eoflow.journal.records import Status

    app_db = pgserver.fresh_database()
    journal_sql(app_db, "CREATE TABLE ad_held (id TEXT PRIMARY KEY)")
    AD_HOLDING.clear()
    AD_WAKE.clear()
    took = threading.Event()
    with Engine(journal=pg_url, app_db=app_db, lease=1.0) as paused, \
            Engine(journal=pg_url, app_db=app_db, lease=30.0, workers=1) as taker:
        try:
            monkeypatch.setattr(paused.runtime.journal, "renew_lease", lambda now_ms: True)
            held = paused.start(ad_held, "k")
            assert AD_HOLDING.wait(10)

            def take() -> None:
                taker.run(ad_taking, "k")
                took.set()

            threading.Thread(target=take, daemon=True).start()
            assert took.wait(15), "the taken-over engine's session kept its lock"
            record = taker.runtime.journal.get_workflow(held.workflow_id)
            deadline = time.monotonic() + 15
            while record is not None and record.status is not Status.SUCCESS \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
                record = taker.runtime.journal.get_workflow(held.workflow_id)
            assert record is not None and record.status is Status.SUCCESS, record
        finally:
            AD_WAKE.set()
    assert journal_sql(app_db, "SELECT id FROM ad_held") == [("k",)]

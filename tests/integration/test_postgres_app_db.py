"""`--app-db postgresql://...`: the application's tables and transaction records in a PostgreSQL
database apart from the journal (itself a SQLite file or another PostgreSQL database)."""

from __future__ import annotations

from pathlib import Path

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

"""`eoflow journal copy`: a journal moved from SQLite to PostgreSQL and back, every table equal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import eoflow
from eoflow import Engine, step, transaction, workflow
from eoflow.cli.main import cli
from eoflow.errors import JournalError
from eoflow.journal import admin, codec
from eoflow.journal.copy import TABLES, copy
from eoflow.journal.opening import open_journal
from eoflow.journal.records import KafkaKey, NewWorkflow, Status
from eoflow.journal.sqljournal import SqlJournal
from tests.portable import app_sql, journal_sql


@step()
def c_double(x: int) -> int:
    return 2 * x


@transaction()
def c_record(x: int) -> int:
    app_sql("CREATE TABLE IF NOT EXISTS c_rows (x INTEGER)")
    app_sql("INSERT INTO c_rows VALUES (?)", (x,))
    return x


@workflow()
def c_flow(x: int) -> int:
    eoflow.set_event("progress", {"at": x})
    return c_record(c_double(x))


def fill(path: str) -> None:
    """A journal with something in every table eoflow keeps."""
    with Engine(journal=path) as engine:
        assert engine.run(c_flow, 21) == 42
    journal = open_journal(path)
    assert isinstance(journal, SqlJournal)
    try:
        packed = codec.pack({"v": codec.blob_ref([], b"\x00raw\xff", 0)}, [b"\x00raw\xff"])
        journal.create_workflows([
            NewWorkflow("waiting", "c_flow", codec.encode({"args": [1], "kwargs": {}}), 5),
            NewWorkflow("queued", "c_flow", packed, 6, queue="q", status=Status.ENQUEUED,
                        dedup_id="d1", priority=3, not_before_ms=9),
            NewWorkflow("child", "c_flow", codec.encode({}), 7, parent_id="waiting"),
        ], 10)
        journal.send_message("waiting", "topic", codec.encode("hello"), 11)
        key = KafkaKey("kafka:t:0:5:g", "g", "t", 0, 5)
        journal.note_offsets([key], 12)
        journal.set_kafka_topic_id("g", "t", "id-1", 12)
        journal.quarantine(key, "handler", b"k", b"\xffvalue", '[["h", "AA=="]]', 13, "boom",
                           3, 14, raw=b"\x00\x01batch")
        journal.tx.apply_keyed([("kafka:t:0:6:g", "handler", lambda conn: None, "0")], 15)
        journal.committer.write(lambda conn: conn.execute(
            "INSERT INTO eoflow_tx_outputs VALUES ('elsewhere', 1, 'n', '1', NULL, 16)"))
        journal.set_retention(7 * 86_400_000)
    finally:
        journal.close()
    admin.cancel(path, "queued")  # leaves an operator request for the engine


def table_rows(target: str) -> dict[str, list[tuple[Any, ...]]]:
    found = {}
    for table, columns, order in TABLES:
        order = order.format(creation="seq" if target.startswith("postgresql") else "rowid")
        rows = journal_sql(target, f"SELECT {columns} FROM {table} ORDER BY {order}")
        if table == "eoflow_meta":
            rows = [r for r in rows if r[0] != "schema_version"]
        found[table] = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                        for row in rows]
    return found


def comparable(rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """Inputs compared as bytes: text on SQLite, bytea on PostgreSQL."""
    return {table: [tuple(v.encode() if table == "eoflow_workflows" and i == 3 and
                          isinstance(v, str) else v for i, v in enumerate(row)) for row in got]
            for table, got in rows.items()}


def test_a_journal_goes_to_postgres_and_back_unchanged(tmp_path: Path, pg_url: str) -> None:
    original, back = str(tmp_path / "original.db"), str(tmp_path / "back.db")
    fill(original)
    before = table_rows(original)
    assert all(before.values()), {t: len(r) for t, r in before.items()}  # every table has rows
    tables = {r[0] for r in journal_sql(
        original, "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'eoflow%'")}
    assert tables == {table for table, _, _ in TABLES}  # a new table must join the copy

    counts = copy(original, pg_url)
    assert counts == {table: len(rows) for table, rows in before.items()}
    assert comparable(table_rows(pg_url)) == comparable(before)

    tables = {r[0] for r in journal_sql(
        pg_url, "SELECT tablename FROM pg_tables WHERE tablename LIKE 'eoflow%'")}
    assert tables == {table for table, _, _ in TABLES}

    copy(pg_url, back)
    assert table_rows(back) == before  # byte for byte, text stays text, BLOBs stay BLOBs

    with Engine(journal=pg_url) as engine:  # the copy is a journal an engine can carry on
        assert engine.journal.get_workflow("queued").status is Status.CANCELLED
        assert codec.decode(engine.journal.get_workflow("queued").inputs) == {"v": b"\x00raw\xff"}
        assert engine.run(c_flow, 5, workflow_id="after-copy") == 10


def test_copy_refuses_a_destination_with_journal_data(tmp_path: Path, pg_url: str) -> None:
    source = str(tmp_path / "source.db")
    fill(source)
    copy(source, pg_url)
    with pytest.raises(JournalError, match="already holds journal data .*eoflow_workflows"):
        copy(source, pg_url)
    with pytest.raises(JournalError, match="is the source itself"):
        copy(source, source)


@pytest.mark.parametrize("running_on", ["sqlite", "postgres"])
def test_copy_refuses_a_source_an_engine_runs_on_unless_live(
        tmp_path: Path, pg_url: str, running_on: str) -> None:
    """A copy taken under a running engine misses what it does next, and both journals run
    would apply messages twice: refused, unless --live asks for a snapshot."""
    source = str(tmp_path / "source.db")
    fill(source)
    if running_on == "postgres":
        copy(source, pg_url)
        source, destination = pg_url, str(tmp_path / "snapshot.db")
    else:
        destination = pg_url
    with Engine(journal=source):
        with pytest.raises(JournalError,
                           match=r"in use by its engine \(.*\); stop it first.*--live"):
            copy(source, destination)
        live = copy(source, destination, live=True)
    assert live["eoflow_workflows"] > 0
    assert copy(source, str(tmp_path / "stopped.db")) == live  # the engine stopped: allowed
    Engine(journal=source).close()  # and the copy let the source go


def test_the_cli_copies_and_never_shows_the_password(tmp_path: Path, pg_url: str) -> None:
    source = str(tmp_path / "source.db")
    fill(source)
    secret_url = pg_url.replace("postgres:@", "postgres:s3cret@", 1)
    assert "s3cret" in secret_url  # the server trusts local connections: any password does
    result = CliRunner().invoke(cli, ["journal", "copy", source, secret_url])
    assert result.exit_code == 0, result.output
    assert "copied" in result.output and "3 runs" not in result.output
    again = CliRunner().invoke(cli, ["journal", "copy", source, secret_url])
    assert again.exit_code == 1 and "already holds journal data" in again.output
    assert "s3cret" not in result.output + again.output

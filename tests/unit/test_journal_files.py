"""Bad journal files give one clear error naming the path; nothing is damaged."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import apsw
import pytest

from eoflow import Engine, step, workflow
from eoflow.errors import JournalError, JournalFormatError, JournalLockedError, JournalWriteError
from eoflow.journal.reader import SQLiteReader
from eoflow.journal.schema import SCHEMA_VERSION


@step()
def jf_step(i: int) -> int:
    return i + 1


@workflow()
def jf_flow(i: int) -> int:
    return jf_step(i)


def test_second_engine_on_a_journal_fails_at_once(journal_path: str) -> None:
    with Engine(journal=journal_path):
        with pytest.raises(JournalLockedError, match=f"pid {os.getpid()}") as info:
            Engine(journal=journal_path)
        assert journal_path in str(info.value)


def test_engine_in_another_process_holds_the_lock(journal_path: str) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", "import sys, eoflow; e = eoflow.Engine(journal=sys.argv[1]); "
         "print('ready', flush=True); sys.stdin.read()", journal_path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
            with pytest.raises(JournalLockedError, match=f"pid {holder.pid}"):
                Engine(journal=journal_path)
            reader = SQLiteReader(journal_path)  # readers need no lock
            assert reader.count_by_status() == {}
            reader.close()
        finally:
            holder.kill()
    with Engine(journal=journal_path) as engine:  # SIGKILL released the lock
        assert engine.run(jf_flow, 1) == 2


def test_reader_sees_committed_runs_while_the_engine_runs(journal_path: str) -> None:
    with Engine(journal=journal_path) as engine:
        engine.run(jf_flow, 1, workflow_id="seen")
        reader = SQLiteReader(journal_path)
        record = reader.get_workflow("seen")
        assert record is not None and record.status.value == "SUCCESS"
        reader.close()


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not sqlite " * 100)
    with pytest.raises(JournalFormatError, match="not an eoflow journal"):
        Engine(journal=str(path))
    assert path.read_text().startswith("this is not sqlite")
    with pytest.raises(JournalFormatError):
        SQLiteReader(str(path))


def test_reader_refuses_a_plain_sqlite_file(tmp_path: Path) -> None:
    path = str(tmp_path / "other.db")
    conn = apsw.Connection(path)
    conn.execute("CREATE TABLE t(x)")
    conn.close()
    with pytest.raises(JournalFormatError, match="no eoflow tables"):
        SQLiteReader(path)


def test_reader_on_missing_file(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="does not exist"):
        SQLiteReader(str(tmp_path / "missing.db"))


def test_journal_from_a_newer_eoflow(journal_path: str) -> None:
    Engine(journal=journal_path).close()
    conn = apsw.Connection(journal_path)
    conn.execute("UPDATE eoflow_meta SET value = ? WHERE key = 'schema_version'",
                 (str(SCHEMA_VERSION + 1),))
    conn.close()
    with pytest.raises(JournalFormatError, match="newer eoflow.*upgrade eoflow"):
        Engine(journal=journal_path)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="lock file|cannot be opened"):
        Engine(journal=str(tmp_path / "no" / "such" / "dir" / "j.db"))


def test_read_only_journal() -> None:
    """A journal the process may not write: file, lock file and folder without write
    permission, opened by an unprivileged user (root ignores permission bits, so the child
    drops to nobody after importing eoflow)."""
    folder = Path(tempfile.mkdtemp(prefix="eoflow-ro-", dir="/tmp"))
    try:
        path = str(folder / "j.db")
        Engine(journal=path).close()
        for name in os.listdir(folder):
            os.chmod(folder / name, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.chmod(folder, 0o555)
        code = ("import os, sys, eoflow\n"
                "if os.geteuid() == 0:\n"
                "    os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
                "try:\n    eoflow.Engine(journal=sys.argv[1])\n"
                "except eoflow.EoflowError as e:\n    print(e)\n")
        done = subprocess.run([sys.executable, "-c", code, path], capture_output=True,
                              text=True, timeout=60)
        assert done.stdout.strip() == (f"journal {path!r}: is read-only; check the file's and "
                                       "its folder's permissions"), done.stderr
    finally:
        os.chmod(folder, 0o755)
        shutil.rmtree(folder)


def test_full_disk_fails_the_run_cleanly_and_loses_nothing(journal_path: str) -> None:
    with Engine(journal=journal_path) as engine:
        engine.run(jf_flow, 1, workflow_id="before")
        # SQLite reports SQLITE_FULL when the file would grow past max_page_count: the same
        # error path as a full disk.
        pages = engine.journal.committer.read(
            lambda c: c.execute("PRAGMA page_count").fetchall()[0][0])
        engine.journal.committer.read(
            lambda c: c.execute(f"PRAGMA max_page_count={pages}").fetchall())
        with pytest.raises(JournalWriteError, match="disk is full"):
            engine.run(jf_flow, 1, workflow_id="x" * 5000)
    with Engine(journal=journal_path) as engine:
        assert engine.retrieve("before").result() == 2


def test_full_disk_inside_a_transaction_records_nothing(journal_path: str) -> None:
    import eoflow
    from eoflow import transaction

    @transaction()
    def big_insert() -> None:
        eoflow.db().execute("INSERT INTO blobs VALUES (zeroblob(200000))")

    with Engine(journal=journal_path) as engine:
        engine.journal.committer.read(lambda c: c.execute("CREATE TABLE blobs(b)"))
        pages = engine.journal.committer.read(
            lambda c: c.execute("PRAGMA page_count").fetchall()[0][0])
        engine.journal.committer.read(
            lambda c: c.execute(f"PRAGMA max_page_count={pages + 2}").fetchall())
        with pytest.raises(JournalWriteError, match="disk is full"):
            big_insert()
        assert engine.journal.committer.read(
            lambda c: c.execute("SELECT count(*) FROM blobs").fetchall()) == [(0,)]


def test_a_journal_of_schema_4_is_migrated_with_its_steps(journal_path: str) -> None:
    """Schema 5 rebuilt eoflow_steps as a rowid table: an older journal's steps survive, and
    its pending run resumes from them."""
    from eoflow.journal import codec
    from eoflow.journal.schema import MIGRATIONS
    from eoflow.journal.sql import Q

    conn = apsw.Connection(journal_path)
    conn.execute("PRAGMA journal_mode=WAL")
    for migration in MIGRATIONS[:4]:
        conn.execute(migration)
    conn.execute(Q["set_meta"], ("schema_version", "4"))
    conn.execute(Q["tx_schema_1"])
    assert "WITHOUT ROWID" in str(conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'eoflow_steps'").fetchone())
    inputs = codec.encode({"args": [41], "kwargs": {}})
    conn.execute("INSERT INTO eoflow_workflows (workflow_id, name, status, inputs, created_ms, "
                 "updated_ms) VALUES ('old', ?, 'PENDING', ?, 1, 1)", (_name(jf_flow), inputs))
    conn.execute("INSERT INTO eoflow_steps VALUES ('old', 1, ?, 'step', ?, NULL, 1, 1, 2)",
                 (_name(jf_step), codec.encode(1000)))
    conn.close()
    with Engine(journal=journal_path) as engine:
        assert engine.retrieve("old").result(timeout=10) == 1000  # replayed, not run again
        assert [s.step for s in engine.journal.steps_of("old")] == [1]
    conn = apsw.Connection(journal_path, flags=apsw.SQLITE_OPEN_READONLY)
    sql = str(conn.execute("SELECT sql FROM sqlite_master WHERE name = 'eoflow_steps'")
              .fetchone())
    version = conn.execute(Q["get_meta"], ("schema_version",)).fetchone()
    conn.close()
    assert "WITHOUT ROWID" not in sql and "PRIMARY KEY (workflow_id, step)" in sql
    assert version == (str(SCHEMA_VERSION),) and SCHEMA_VERSION >= 5


def _name(fn: object) -> str:
    from eoflow.engine.registry import definition_of

    return definition_of(fn).name

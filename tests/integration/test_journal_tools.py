"""`eoflow journal` prune, backup, export, check and info, on real files, while an app runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import apsw
import pytest
from click.testing import CliRunner

from eoflow import Engine, step, workflow
from eoflow.cli.main import cli
from eoflow.journal import codec, export, maintenance
from eoflow.journal.kafka_keys import message_key


@step()
def tool_double(x: int) -> int:
    return x * 2


@step()
def tool_bytes(x: int) -> bytes:
    return bytes([x % 256]) * 3


@workflow()
def tool_flow(x: int) -> int:
    tool_bytes(x)
    return tool_double(x) + 1


def fill(path: str, count: int) -> None:
    with Engine(journal=path, workers=8) as engine:
        for h in [engine.start(tool_flow, i) for i in range(count)]:
            h.result()


def invoke(*args: str) -> tuple[int, str, str]:
    done = CliRunner().invoke(cli, list(args))
    return done.exit_code, done.stdout, done.stderr


def sql(path: str, *statements: str) -> None:
    conn = apsw.Connection(path)
    for statement in statements:
        conn.execute(statement)
    conn.close()


# -- backup ----------------------------------------------------------------------------------

def test_backup_is_one_consistent_moment_while_the_engine_writes(
        journal_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(journal_path, 1500)
    monkeypatch.setattr(maintenance, "BACKUP_PAGES", 2)  # many steps, many commits between
    copy = str(tmp_path / "copy.db")
    seen: list[tuple[int, int]] = []
    stop, writing = threading.Event(), threading.Event()
    written = []

    def writer() -> None:
        with Engine(journal=journal_path, workers=4) as engine:
            while not stop.is_set():
                engine.start(tool_flow, 7).result()
                written.append(1)
                writing.set()

    def progress(copied: int, total: int) -> None:
        if seen and copied < seen[-1][0]:
            raise AssertionError("the backup started again: it did not read one snapshot")
        seen.append((copied, total))
        time.sleep(0.01)  # the engine commits between two steps

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert writing.wait(10)
        before = len(written)
        report = maintenance.backup(journal_path, copy, progress=progress)
        assert len(written) - before > 10  # the engine went on committing meanwhile
    finally:
        stop.set()
        thread.join()
    # Never restarted by the engine's commits: the copy advanced step by step to the end.
    assert len(seen) > 10
    assert [c for c, _ in seen] == sorted(c for c, _ in seen) and seen[-1][0] == seen[-1][1]
    assert report.pages == seen[-1][1] and not os.path.exists(copy + ".partial")
    assert maintenance.check(copy).ok
    runs = list(export.runs(copy))
    assert len(runs) >= 1500 and {r["status"] for r in runs} <= {"SUCCESS", "PENDING"}
    with Engine(journal=copy) as engine:  # a journal of its own: a run caught mid-way resumes
        for run in runs:
            x = run["inputs"]["args"][0]
            assert engine.retrieve(run["workflow_id"]).result() == 2 * x + 1


def test_backup_refuses_to_overwrite_or_copy_onto_itself(journal_path: str,
                                                         tmp_path: Path) -> None:
    fill(journal_path, 3)
    taken = tmp_path / "taken.db"
    taken.write_text("precious")
    code, _, err = invoke("journal", "backup", str(taken), "--journal", journal_path)
    assert code == 1 and "already exists" in err and "--force" in err
    assert taken.read_text() == "precious"
    code, _, err = invoke("journal", "backup", journal_path, "--journal", journal_path,
                          "--force")
    assert code == 1 and "is the journal itself" in err
    code, out, _ = invoke("journal", "backup", str(taken), "--journal", journal_path, "--force",
                          "--json")
    assert code == 0 and json.loads(out)["pages"] > 0
    assert maintenance.info(str(taken))["runs"] == 3


# -- export ----------------------------------------------------------------------------------

def test_export_streams_every_run_once_with_its_steps_and_filters(
        journal_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(journal_path, 23)
    monkeypatch.setattr(export, "PAGE", 4)  # pages of 4: every page boundary crossed
    out = tmp_path / "runs.jsonl"
    code, said, _ = invoke("journal", "export", "--journal", journal_path, "-o", str(out))
    assert code == 0 and "exported 23 run(s)" in said
    runs = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["inputs"]["args"][0] for r in runs) == list(range(23))
    first = runs[0]
    x = first["inputs"]["args"][0]
    assert first["output"] == 2 * x + 1 and first["status"] == "SUCCESS"
    assert [s["step"] for s in first["steps"]] == [1, 2]
    assert first["steps"][0]["output"][codec.TAG] == "bytes"  # tagged JSON, as stored
    assert codec.decode(json.dumps(first["steps"][0]["output"])) == bytes([x]) * 3
    one = export.runs(journal_path, workflow_id=first["workflow_id"])
    assert [r["workflow_id"] for r in one] == [first["workflow_id"]]
    code, said, _ = invoke("journal", "export", "--journal", journal_path, "--status", "error")
    assert code == 0 and said == ""
    future = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + 3600))
    assert list(export.runs(journal_path, since_ms=int((time.time() + 3600) * 1000))) == []
    code, said, _ = invoke("journal", "export", "--journal", journal_path, "--since", future)
    assert code == 0 and said == ""
    code, said, _ = invoke("journal", "export", "--journal", journal_path, "--since", "1h")
    assert code == 0 and len(said.splitlines()) == 23
    code, _, err = invoke("journal", "export", "--journal", journal_path, "--since", "lately")
    assert code == 1 and "--since" in err


def test_export_keeps_a_value_it_cannot_read(journal_path: str) -> None:
    fill(journal_path, 1)
    sql(journal_path, "UPDATE eoflow_workflows SET output = '{not json'")
    run, = export.runs(journal_path)
    assert run["output"][codec.TAG] == "unreadable" and run["output"]["v"] == "{not json"


# -- check -----------------------------------------------------------------------------------

def failing(report: maintenance.CheckReport) -> dict[str, list[str]]:
    return {f.check: f.examples for f in report.findings if f.problems}


def test_check_passes_a_healthy_journal_and_names_each_broken_invariant(
        journal_path: str) -> None:
    fill(journal_path, 5)
    assert maintenance.check(journal_path).ok
    code, out, _ = invoke("journal", "check", "--journal", journal_path, "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    ids = [r["workflow_id"] for r in export.runs(journal_path)]
    mark = message_key("g", "orders", 0, 41)
    sql(journal_path,
        "INSERT INTO eoflow_steps VALUES ('ghost', 1, 's', 'step', '1', NULL, 1, 0, 0)",
        f"DELETE FROM eoflow_steps WHERE workflow_id = '{ids[0]}' AND step = 1",
        f"UPDATE eoflow_workflows SET status = 'LOST' WHERE workflow_id = '{ids[1]}'",
        "INSERT INTO eoflow_kafka_offsets VALUES ('g', 'orders', 0, 41, 42, 0)",
        "INSERT INTO eoflow_quarantine VALUES ('q1', 'g', 'orders', 0, 3, 'gone_handler', NULL, "
        "x'00', '[]', NULL, 'boom', 1, 0, 'QUARANTINED', NULL)",
        "INSERT INTO eoflow_quarantine VALUES ('q2', 'g', 'orders', 0, 4, 'h', NULL, x'00', "
        "'[]', NULL, 'boom', 1, 0, 'WEIRD', NULL)")
    found = failing(maintenance.check(journal_path))
    assert found.keys() == {"orphan-steps", "step-gaps", "run-statuses", "kafka-marks",
                            "quarantine"}
    assert found["orphan-steps"] == ["ghost (1 steps)"]
    assert found["step-gaps"] == [f"{ids[0]} (1 steps numbered 2..2)"]
    assert found["kafka-marks"][0].startswith(mark)
    assert found["quarantine"] == ["q2 (status WEIRD)"]
    with_app = failing(maintenance.check(journal_path, handlers=["h"]))
    assert with_app["quarantine"] == ["q1 (handler 'gone_handler' is not in the app)",
                                      "q2 (status WEIRD)"]
    code, out, _ = invoke("journal", "check", "--journal", journal_path)
    assert code == 1 and "PROBLEMS FOUND" in out
    # A mark backed by its message's run (the workflow path) holds.
    sql(journal_path, f"UPDATE eoflow_workflows SET workflow_id = '{mark}' "
                      f"WHERE workflow_id = '{ids[2]}'")
    assert "kafka-marks" not in failing(maintenance.check(journal_path))


def test_check_finds_a_key_in_the_app_db_and_reports_a_corrupt_page(
        journal_path: str, tmp_path: Path) -> None:
    fill(journal_path, 2000)
    app_db = str(tmp_path / "app.db")
    mark = message_key("g", "t", 0, 9)
    sql(journal_path, "INSERT INTO eoflow_kafka_offsets VALUES ('g', 't', 0, 9, 10, 0)")
    sql(app_db, "CREATE TABLE eoflow_kafka_keys (key TEXT PRIMARY KEY, handler TEXT NOT NULL, "
                "applied_ms INTEGER NOT NULL) WITHOUT ROWID",
        f"INSERT INTO eoflow_kafka_keys VALUES ('{mark}', 'h', 0)")
    assert "kafka-marks" in failing(maintenance.check(journal_path))
    assert maintenance.check(journal_path, app_db=app_db).ok
    conn = apsw.Connection(journal_path)
    page = conn.execute("SELECT pageno FROM dbstat WHERE name = 'eoflow_workflows_updated' "
                        "AND pagetype = 'leaf' LIMIT 1").fetchall()[0][0]
    size = conn.execute("PRAGMA page_size").fetchall()[0][0]
    conn.close()
    with open(journal_path, "r+b") as f:  # zero a leaf page of an index
        f.seek((page - 1) * size + 100)
        f.write(b"\x00" * (size - 100))
    found = failing(maintenance.check(journal_path, app_db=app_db))
    assert list(found) == ["sqlite-integrity (journal.db)"]
    code, _, _ = invoke("journal", "check", "--journal", journal_path, "--app-db", app_db,
                        "--quick")
    assert code == 1


# -- info ------------------------------------------------------------------------------------

def test_info_counts_rows_and_shows_the_retention_in_force(journal_path: str) -> None:
    fill(journal_path, 12)
    with Engine(journal=journal_path, retention="7d"):
        pass
    data = maintenance.info(journal_path)
    assert data["runs"] == 12 and data["rows"]["eoflow_steps"] == 24
    assert data["retention_ms"] == 7 * 86_400_000 and data["schema_version"] >= 5
    assert data["oldest_run_ms"] <= data["newest_run_ms"]
    assert data["file_bytes"] == data["pages"] * data["page_size"]
    code, out, _ = invoke("journal", "info", "--journal", journal_path)
    assert code == 0 and "604800s" in out and "eoflow_steps\t24" in out
    code, out, _ = invoke("journal", "info", "--journal", journal_path, "--json")
    assert code == 0 and json.loads(out)["rows"]["eoflow_workflows"] == 12


def test_journal_commands_never_create_a_journal(tmp_path: Path) -> None:
    typo = str(tmp_path / "typo.db")
    for args in (["info"], ["check"], ["export"], ["backup", str(tmp_path / "b.db")],
                 ["prune", "--older-than", "1d"]):
        code, _, err = invoke("journal", *args, "--journal", typo)
        assert code == 1 and "does not exist" in err, (args, err)
    assert list(tmp_path.iterdir()) == []


# -- prune, while an app runs ----------------------------------------------------------------

APP = textwrap.dedent("""
    import sys, time
    from eoflow import Engine, step, workflow

    @step()
    def double(x):
        return x * 2

    @workflow()
    def flow(x):
        time.sleep(0.002)
        return double(x) + double(1)

    @workflow()
    def slow(x):  # PENDING for seconds, through many prunes: never a candidate
        first = double(x)
        time.sleep(3)
        return first + double(x)

    with Engine(journal=sys.argv[1], workers=8) as engine:
        long_run = engine.start(slow, 5)
        done, deadline = 1, time.time() + float(sys.argv[2])
        while time.time() < deadline:
            handles = [engine.start(flow, i) for i in range(50)]
            assert [h.result() for h in handles] == [2 * i + 2 for i in range(50)]
            done += 50
        assert long_run.result() == 20
        print(done)
""")


def test_prune_by_hand_races_a_running_app_and_removes_only_finished_runs(
        journal_path: str, tmp_path: Path) -> None:
    script = tmp_path / "busy_app.py"
    script.write_text(APP)
    app = subprocess.Popen([sys.executable, str(script), journal_path, "6"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    removed = 0
    try:
        while app.poll() is None:
            time.sleep(0.3)
            if not os.path.exists(journal_path):
                continue
            done = subprocess.run([sys.executable, "-m", "eoflow.cli.main", "journal", "prune",
                                   "--older-than", "0.2s", "--journal", journal_path,
                                   "--json"], capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            report = json.loads(done.stdout)
            removed += report["runs"]
            assert report["longest_batch_ms"] < 2000
        out, err = app.communicate(timeout=60)
    finally:
        app.kill()
    assert app.returncode == 0, err
    started = int(out)
    assert removed > 0 and started > removed // 2
    data = maintenance.info(journal_path)
    assert data["runs"] + removed == started  # nothing else went, nothing stayed behind
    assert data["rows"]["eoflow_steps"] == 2 * data["runs"]
    assert maintenance.check(journal_path).ok


def test_an_operator_drops_a_quarantined_message_and_retention_then_forgets_it(
        journal_path: str) -> None:
    fill(journal_path, 1)
    row = ("'g', 'orders', 0, {offset}, 'h', NULL, x'00', '[]', NULL, 'boom', 1, 0, "
           "'QUARANTINED', NULL")
    sql(journal_path, f"INSERT INTO eoflow_quarantine VALUES ('q1', {row.format(offset=1)})",
        f"INSERT INTO eoflow_quarantine VALUES ('q2', {row.format(offset=2)})")
    code, out, _ = invoke("quarantine", "drop", "q1", "--journal", journal_path)
    assert code == 0 and "dropped q1" in out
    code, _, err = invoke("quarantine", "drop", "q1", "--journal", journal_path)
    assert code == 1 and "is DROPPED, not QUARANTINED" in err
    code, _, err = invoke("quarantine", "retry", "q1", "--journal", journal_path)
    assert code == 1 and "dropped by an operator" in err
    code, out, _ = invoke("journal", "prune", "--older-than", "1s", "--journal", journal_path,
                          "--json")
    assert code == 0 and json.loads(out)["quarantine"] == 1  # q1 went; q2 waits for a decision
    code, out, _ = invoke("quarantine", "list", "--journal", journal_path, "--json")
    assert [q["key"] for q in json.loads(out)] == ["q2"]

"""What the CLI shows at 80 columns and in a pipe: ids whole, nothing wrapped, one line a row."""

from __future__ import annotations

import io
import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from rich.console import Console

from eoflow import Engine, step, workflow
from eoflow.cli import render
from eoflow.cli.main import cli
from eoflow.journal.records import NewWorkflow

KAFKA_ID = "kafka:orders-topic:2:12345:eoflow-Orders.handle"
HEX_ID = "0123456789abcdef0123456789abcdef"


@step()
def rd_step() -> int:
    raise ValueError("a long error message " * 5)


@workflow()
def rd_flow() -> int:
    return rd_step()


def _journal(path: str) -> None:
    with Engine(journal=path, recover=False) as engine:
        engine.journal.create_workflows([NewWorkflow(KAFKA_ID, "Orders.handle", "{}", 1),
                                         NewWorkflow(HEX_ID, "Orders.handle", "{}", 1)], 1)
        with pytest.raises(ValueError):
            engine.run(rd_flow, workflow_id="failed-run-with-a-long-id-0001")


def test_ids_are_whole_on_one_line_at_80_columns(journal_path: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _journal(journal_path)
    screen = io.StringIO()
    monkeypatch.setattr(render, "out", Console(file=screen, width=80, force_terminal=True,
                                               color_system=None))
    done = CliRunner().invoke(cli, ["workflows", "list", "--journal", journal_path])
    assert done.exit_code == 0, done.output
    lines = screen.getvalue().splitlines()
    for wid in (KAFKA_ID, HEX_ID, "failed-run-with-a-long-id-0001"):
        assert any(wid in line for line in lines), (wid, screen.getvalue())
    assert all(len(line) <= 80 for line in lines)


def test_a_pipe_gets_plain_tab_separated_lines(journal_path: str) -> None:
    _journal(journal_path)
    done = CliRunner().invoke(cli, ["workflows", "list", "--journal", journal_path])
    lines = done.output.splitlines()
    assert lines[0].split("\t") == ["workflow id", "name", "status", "created", "error",
                                     "executor", "version"]
    assert {line.split("\t")[0] for line in lines[1:]} == {
        KAFKA_ID, HEX_ID, "failed-run-with-a-long-id-0001"}
    failed = next(line for line in lines if line.startswith("failed-run"))
    assert ("a long error message " * 5).strip() in failed  # nothing cut in a pipe


def test_quarantine_list_prints_its_table_only(journal_path: str) -> None:
    _journal(journal_path)
    done = CliRunner().invoke(cli, ["quarantine", "list", "--journal", journal_path])
    assert done.exit_code == 0
    assert done.output.splitlines() == ["key\thandler\tstatus\tattempts\tquarantined\terror"]


@pytest.mark.parametrize("as_json", [False, True])
def test_watch_in_a_pipe_prints_a_line_a_refresh(journal_path: str, as_json: bool) -> None:
    _journal(journal_path)
    args = [sys.executable, "-m", "eoflow.cli.main", "status", "--watch", "--journal",
            journal_path] + (["--json"] if as_json else [])
    watcher = subprocess.Popen(args, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "COLUMNS": "80"})
    assert watcher.stdout is not None
    early: list[str] = []  # two refreshes, however long start-up takes (a fresh environment)
    deadline = time.monotonic() + 60
    while len(early) < 2 and time.monotonic() < deadline:
        if select.select([watcher.stdout], [], [], 0.1)[0]:
            line = watcher.stdout.readline()
            if not line:
                break
            if line.strip():
                early.append(line)
    watcher.send_signal(signal.SIGINT)
    output, _ = watcher.communicate(timeout=10)
    lines = early + [line for line in output.splitlines() if line]
    assert len(lines) >= 2, output
    if as_json:
        assert all(json.loads(line)["workflows"]["PENDING"] == 2 for line in lines)
    else:
        assert all("PENDING=2" in line and "ERROR=1" in line for line in lines)


def test_kafka_values_show_as_text_and_json_and_uncut_with_full(journal_path: str) -> None:
    from eoflow.engine.kafka.defs import KafkaMessage, encode_handler_inputs

    payload = {"order": 42, "note": "x" * 300}
    message = KafkaMessage("orders", 0, 7, b"customer-1", json.dumps(payload).encode())
    with Engine(journal=journal_path, recover=False) as engine:
        engine.journal.create_workflows([NewWorkflow(
            "kafka:orders:0:7:g", "Orders.handle", encode_handler_inputs(message), 1)], 1)
        engine.journal.create_workflows([NewWorkflow("bad-json", "x", "{not json", 1)], 1)
    runner = CliRunner()
    shown = json.loads(runner.invoke(cli, ["workflows", "show", "kafka:orders:0:7:g", "--json",
                                           "--journal", journal_path]).output)
    fields = shown["inputs"]["args"][2]["v"]
    assert fields["value"]["json"] == payload and "v" in fields["value"]  # base64 kept
    assert fields["key"]["text"] == "customer-1"
    cut = runner.invoke(cli, ["workflows", "show", "kafka:orders:0:7:g", "--journal",
                              journal_path]).output
    full = runner.invoke(cli, ["workflows", "show", "kafka:orders:0:7:g", "--full",
                               "--journal", journal_path]).output
    assert '"order": 42' in cut and '"key": "customer-1"' in cut
    assert cut.count("x") < 300 <= full.count("x")  # cut by default, whole with --full
    broken = runner.invoke(cli, ["workflows", "show", "bad-json", "--journal", journal_path])
    assert broken.exit_code == 0 and "unreadable" in broken.output


def _screen(monkeypatch: pytest.MonkeyPatch, width: int = 80) -> io.StringIO:
    """A terminal `width` columns wide for what the CLI prints with rich."""
    screen = io.StringIO()
    monkeypatch.setattr(render, "out", Console(file=screen, width=width, force_terminal=True,
                                               color_system=None))
    return screen


def _quarantine(path: str, key: str = KAFKA_ID, value: bytes = b'{"order": 42}') -> None:
    from eoflow.journal.records import KafkaKey

    error = json.dumps({"type": "builtins:ValueError", "message": "a poison message " * 4})
    with Engine(journal=path, recover=False) as engine:
        engine.journal.quarantine(KafkaKey(key, "eoflow-Orders", "orders-topic", 2, 12345),
                                  "Orders.handle", b"customer-1", value, "[]", None, error, 3, 1)


def test_at_80_columns_other_columns_give_way_whole(journal_path: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids whole, and the other columns either readable or left out (and said so): never cut
    to a few characters."""
    _journal(journal_path)
    _quarantine(journal_path)
    screen = _screen(monkeypatch)
    runner = CliRunner()
    for args in (["workflows", "list"], ["quarantine", "list"], ["status"]):
        screen.truncate(0)
        screen.seek(0)
        done = runner.invoke(cli, [*args, "--journal", journal_path])
        assert done.exit_code == 0, done.output
        text = screen.getvalue()
        assert all(len(line) <= 80 for line in text.splitlines()), text
        rows = [line for line in text.splitlines() if KAFKA_ID in line or HEX_ID in line
                or "failed-run-with-a-long-id-0001" in line]
        assert rows, (args, text)
        for row in rows:  # a row shows its status whole, and no time cut short
            assert any(s in row for s in ("PENDING", "ERROR", "QUARANTINED")), (args, text)
            assert "1970-" not in row or "1970-01-01T00:00:00.001+00:00" in row, (args, text)
    assert KAFKA_ID in text and "failed-run-with-a-long-id-0001" in text  # status: both ids


def test_status_and_show_in_a_pipe_are_plain_uncut_lines(journal_path: str) -> None:
    _journal(journal_path)
    _quarantine(journal_path)
    runner = CliRunner(env={"COLUMNS": "80"})
    status = runner.invoke(cli, ["status", "--journal", journal_path]).output.splitlines()
    failure = next(line for line in status if line.startswith("failed-run-with-a-long-id-0001"))
    assert ("a long error message " * 5).strip() in failure
    quarantined = next(line for line in status if line.startswith(KAFKA_ID + "\t"))
    assert ("a poison message " * 4).strip() in quarantined
    shown = runner.invoke(cli, ["workflows", "show", "failed-run-with-a-long-id-0001",
                                "--journal", journal_path]).output.splitlines()
    assert "error\tbuiltins.ValueError: " + "a long error message " * 5 in shown
    assert any(line.startswith("1\trd_step\tstep\t1\t") for line in shown), shown


def test_quarantine_list_shows_its_rows_only_with_the_value_as_text(journal_path: str) -> None:
    _journal(journal_path)
    _quarantine(journal_path)
    runner = CliRunner()
    lines = runner.invoke(cli, ["quarantine", "list", "--journal", journal_path]).output
    assert lines.splitlines()[0] == "key\thandler\tstatus\tattempts\tquarantined\terror"
    assert [line.split("\t")[0] for line in lines.splitlines()[1:]] == [KAFKA_ID]
    listed = json.loads(runner.invoke(cli, ["quarantine", "list", "--json", "--journal",
                                            journal_path]).output)
    assert listed[0]["value"] == '{"order": 42}' and listed[0]["value_json"] == {"order": 42}
    assert listed[0]["value_base64"] == "eyJvcmRlciI6IDQyfQ=="
    assert listed[0]["message_key"] == "customer-1"


@step()
def rd_quick(text: str) -> bytes:
    return text.encode()


@workflow()
def rd_quick_flow(text: str) -> bytes:
    return rd_quick(text)


def test_steps_show_under_a_millisecond_and_whole_outputs_with_full(
        journal_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from eoflow.engine.clock import FakeClock

    note = "y" * 300
    with Engine(journal=journal_path, clock=FakeClock()) as engine:  # the step takes 0 ms
        engine.run(rd_quick_flow, note, workflow_id="quick")
    screen = _screen(monkeypatch)
    runner = CliRunner()
    assert runner.invoke(cli, ["workflows", "show", "quick", "--journal", journal_path]
                         ).exit_code == 0
    step_row = next(line for line in screen.getvalue().splitlines() if "rd_quick " in line)
    assert step_row.split()[:5] == ["1", "rd_quick", "step", "1", "<1"], step_row
    screen.truncate(0)
    screen.seek(0)
    runner.invoke(cli, ["workflows", "show", "quick", "--full", "--journal", journal_path])
    assert screen.getvalue().count("y") >= 2 * 300  # the output (bytes, as text) and inputs
    assert "$eoflow" not in screen.getvalue()


def test_watch_json_in_a_terminal_prints_an_object_a_refresh(
        journal_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _journal(journal_path)
    _screen(monkeypatch)
    sleeps = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(render.time, "sleep", sleep)
    done = CliRunner().invoke(cli, ["status", "--watch", "--json", "--journal", journal_path])
    assert done.exit_code == 0, done.output
    reports = [json.loads(line) for line in done.output.splitlines()]
    assert len(reports) == 3 and all(r["workflows"]["PENDING"] == 2 for r in reports)
    assert "last_5s_per_second" in reports[0]["throughput"]


def _plant_malformed_rows(path: str) -> None:
    """Rows no eoflow writes: a bug, a newer version or a hand edit."""
    import sqlite3

    Engine(journal=path, recover=False).close()
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO eoflow_workflows (workflow_id, name, status, inputs, output, error, "
        "created_ms, updated_ms) VALUES (?, 'f', ?, ?, ?, ?, ?, 2)", [
            ("type-int", "ERROR", "[]", None, '{"type": 42, "message": "m", "traceback": 5}', 1),
            ("error-list", "ERROR", "[]", None, "[1, 2]", 1),
            ("bad-json", "SUCCESS", "{not json", "[1", None, 1),
            ("too-deep", "SUCCESS", "[" * 500 + "]" * 500, None, None, 1),
            ("zombie", "ZOMBIE", "[]", None, None, "yesterday"),
            ("far", "PENDING", "[]", None, None, 10**17),
            ("steps", "PENDING", "[]", None, None, 1)])
    conn.executemany(
        "INSERT INTO eoflow_steps (workflow_id, step, name, kind, output, error, attempts, "
        "started_ms, ended_ms) VALUES ('steps', ?, ?, ?, ?, ?, 1, ?, 12)", [
            (1, "s1", "teleport", "1", None, 10), (2, "s2", "step", "{oops", None, 10),
            (3, "s3", "step", None, '{"type": 3}', "a"), (4, "s4", "sleep", str(10**20), None, 1)])
    conn.executemany(
        "INSERT INTO eoflow_quarantine (key, group_id, topic, partition, offset, handler, "
        "message_key, value, headers, timestamp_ms, error, attempts, quarantined_ms, status) "
        "VALUES (?, 'g', 't', 0, ?, 'h', ?, ?, '[]', NULL, ?, 1, ?, 'QUARANTINED')", [
            ("q-not-json", 1, b"\xff", b"\xff\x00", "not json", 5),
            ("q-type-int", 2, "text", "text", '{"type": 7}', "when")])
    conn.commit()
    conn.close()


def test_malformed_rows_are_marked_not_tracebacks(journal_path: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _plant_malformed_rows(journal_path)
    runner = CliRunner()
    ids = ["type-int", "error-list", "bad-json", "too-deep", "zombie", "far", "steps"]
    commands = [["status"], ["workflows", "list"], ["quarantine", "list"]]
    commands += [["workflows", "show", wid] for wid in ids]
    outputs = []
    for terminal in (False, True):
        if terminal:
            screen = _screen(monkeypatch, width=100)
        for args in commands:
            for extra in ([], ["--json"]):
                done = runner.invoke(cli, [*args, *extra, "--journal", journal_path])
                assert done.exit_code == 0 and done.exception is None, (
                    args, extra, done.output, done.exception)
                outputs.append(done.output)
                if extra:
                    json.loads(done.output)
    if terminal:
        outputs.append(screen.getvalue())
    everything = "\n".join(outputs)
    for mark in ("<unreadable: 42>", "<unreadable error record: '[1, 2]'>",
                 "<unreadable: '{not json'>", "<unknown status: 'ZOMBIE'>",
                 "<unknown kind: 'teleport'>", "<unreadable: 'yesterday'>",
                 "<unreadable: 100000000000000000>", "<unreadable error record: 'not json'>",
                 "<unreadable: 'when'>", "<unreadable: 5>"):
        assert mark in everything, mark
    shown = json.loads(runner.invoke(cli, ["workflows", "show", "bad-json", "--json",
                                           "--journal", journal_path]).output)
    assert shown["inputs"] == {"$eoflow": "unreadable", "v": "{not json"}

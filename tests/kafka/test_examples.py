"""Each example app runs under `eoflow run` against the real broker and does its job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import apsw

from eoflow.engine.kafka.source import create_topic

from .conftest import produce

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def query(journal: Path, sql: str) -> list[tuple]:
    if not journal.exists():
        return []
    conn = apsw.Connection(str(journal), flags=apsw.SQLITE_OPEN_READONLY)
    conn.setbusytimeout(5000)  # the app may be creating the file this very moment
    try:
        return conn.execute(sql).fetchall()
    except apsw.SQLError:
        return []  # the app has not created its tables yet
    finally:
        conn.close()


def run_example(name: str, broker: str, journal: Path, done: Callable[[], bool]) -> str:
    """Run examples/NAME under `eoflow run` until done(), stop it with SIGTERM; its stderr."""
    log = journal.with_suffix(".log")
    with log.open("w") as stderr:
        app = subprocess.Popen(
            [sys.executable, "-m", "eoflow.cli.main", "run", str(EXAMPLES / name),
             "--journal", str(journal), "--brokers", broker],
            stdout=subprocess.DEVNULL, stderr=stderr, env=dict(os.environ))
    deadline = time.monotonic() + 90
    try:
        while not done() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert done(), log.read_text()[-2000:]
    finally:
        app.send_signal(signal.SIGTERM)
        app.wait(timeout=60)
    assert app.returncode == 0, log.read_text()[-2000:]
    return log.read_text()


def test_minimal_consumer(broker: str, tmp_path: Path) -> None:
    create_topic((broker,), "example-topic", 3)
    produce(broker, "example-topic", [f"hello {i}".encode() for i in range(20)])
    journal = tmp_path / "minimal.db"
    log = run_example("minimal_consumer.py", broker, journal, lambda: query(
        journal, "SELECT count(*) FROM eoflow_workflows WHERE status = 'SUCCESS'") == [(20,)])
    assert "Message received: b'hello 7'" in log


def test_orders(broker: str, tmp_path: Path) -> None:
    create_topic((broker,), "orders", 3)
    produce(broker, "orders", [json.dumps({"id": i}).encode() for i in range(60)])
    journal = tmp_path / "orders.db"
    run_example("orders.py", broker, journal, lambda: query(
        journal, "SELECT count(*) FROM orders") == [(60,)] and query(
        journal, "SELECT count(*) FROM eoflow_workflows WHERE status != 'SUCCESS'") == [(0,)])
    assert query(journal, "SELECT max(applied) FROM orders") == [(1,)]
    steps = query(journal, "SELECT DISTINCT name FROM eoflow_steps ORDER BY name")
    assert steps == [("charge_card",), ("record_order",), ("reserve_stock",)]


def test_ledger_with_a_poison_message(broker: str, tmp_path: Path) -> None:
    for topic in ("payments", "refunds"):
        create_topic((broker,), topic, 3)
    produce(broker, "payments", [json.dumps({"account": "alice", "cents": 500}).encode()] * 4)
    produce(broker, "refunds", [json.dumps({"account": "alice", "cents": 200}).encode(),
                                b"not json at all"])
    journal = tmp_path / "ledger.db"
    run_example("ledger.py", broker, journal, lambda: query(
        journal, "SELECT count(*) FROM ledger") == [(5,)] and query(
        journal, "SELECT count(*) FROM eoflow_quarantine") == [(1,)])
    assert query(journal, "SELECT sum(cents) FROM ledger") == [(1800,)]
    (value,) = query(journal, "SELECT value FROM eoflow_quarantine")[0]
    assert value == b"not json at all"

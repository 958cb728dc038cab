"""Bytes the journal stores per run: a Kafka workflow with a 1 KB message, and a 3-step workflow.

Counts the pages of eoflow's own tables and indexes (SQLite's dbstat), not the application's
rows, after N runs, divided by N; and the bytes of each stored column, to see where they go.
The Kafka runs go through the real consumer loop (a list of messages stands in for the broker,
through the loop's source seam), so they are stored exactly as a consumed message is.

    python benchmarks/journal_bytes.py [--runs 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from typing import Any

import apsw

import eoflow
from eoflow import Engine, KafkaMessage, kafka_consume, step, transaction, workflow
from eoflow.engine.kafka.consumer import ConsumerLoop, Partition
from eoflow.engine.registry import definition_of

TOPIC = "bytes-orders"


@step()
def parse(value: bytes) -> dict[str, Any]:
    return dict(json.loads(value))


@transaction()
def record(order: dict[str, Any]) -> int:
    eoflow.db().execute("INSERT INTO orders (id, total) VALUES (?, ?)",
                        (order["id"], order["total"]))
    return int(order["id"])


@kafka_consume(TOPIC, group_id="bytes-group")
@workflow()
def on_order(topic: str, partition: int, message: KafkaMessage) -> int:
    return record(parse(message.value or b"{}"))


@step()
def fetch(customer: str) -> dict[str, Any]:
    return {"customer": customer, "tier": "gold"}


@step()
def price(info: dict[str, Any], amount: int) -> int:
    return amount * (90 if info["tier"] == "gold" else 100) // 100


@step()
def notify(customer: str, total: int) -> str:
    return f"sent {total} to {customer}"


@workflow()
def checkout(customer: str, amount: int) -> str:
    return notify(customer, price(fetch(customer), amount))


class ListSource:
    """The consumer loop's source seam, serving a fixed list of messages once."""

    def __init__(self, messages: list[KafkaMessage]) -> None:
        self._messages = list(messages)
        self.done = threading.Event()

    def connect(self) -> None: ...

    def poll(self, timeout_ms: int, max_records: int) -> list[KafkaMessage]:
        batch, self._messages = self._messages[:max_records], self._messages[max_records:]
        if not batch:
            self.done.set()
            time.sleep(timeout_ms / 1000)
        return batch

    def commit(self, offsets: dict[Partition, int]) -> None: ...
    def rewind(self, offsets: dict[Partition, int]) -> None: ...
    def pause(self, paused: bool) -> None: ...
    def topic_id(self, topic: str) -> str | None:
        return None
    def skip(self, topic: str, partition: int, offset: int) -> None: ...
    def close(self) -> None: ...


def order_message(i: int, size: int) -> KafkaMessage:
    body = {"id": i, "total": 100 + i, "customer": f"customer-{i % 97}", "note": ""}
    body["note"] = "x" * max(0, size - len(json.dumps(body)))
    return KafkaMessage(TOPIC, i % 4, i // 4, f"customer-{i % 97}".encode(),
                        json.dumps(body).encode(), (("source", b"web"),), 1_760_000_000_000)


def eoflow_bytes(path: str) -> tuple[int, dict[str, int]]:
    conn = apsw.Connection(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
        tables = {str(name): int(size) for name, size in rows
                  if str(name).startswith(("eoflow_", "sqlite_autoindex_eoflow"))}
        return sum(tables.values()), tables
    finally:
        conn.close()


def column_bytes(path: str, table: str, columns: list[str]) -> dict[str, float]:
    conn = apsw.Connection(path)
    try:
        parts = ", ".join(f"avg(length({c}))" for c in columns)
        row = conn.execute(f"SELECT {parts} FROM {table}").fetchone()
        return {c: round(float(v or 0), 1) for c, v in zip(columns, row or (), strict=True)}
    finally:
        conn.close()


def kafka_runs(runs: int, size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "journal.db")
        source = ListSource([order_message(i, size) for i in range(runs)])
        with Engine(journal=path) as engine:
            engine.runtime.txstore.run_plain(lambda conn: conn.execute(
                "CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)"))
            empty, _ = eoflow_bytes(path)
            spec = definition_of(on_order).consumers[0]
            loop = ConsumerLoop(engine.runtime, spec, ("list:0",),
                                source_factory=lambda *args: source)
            loop.start()
            source.done.wait(120)
            while engine.journal.list_workflows(status=eoflow.Status.PENDING, limit=1):
                time.sleep(0.05)
            loop.stop()
        total, tables = eoflow_bytes(path)
        return {"bytes_per_run": round((total - empty) / runs), "tables": tables,
                "workflow_columns": column_bytes(
                    path, "eoflow_workflows",
                    ["workflow_id", "name", "status", "inputs", "output", "lane"]),
                "step_columns": column_bytes(path, "eoflow_steps",
                                             ["workflow_id", "name", "kind", "output"])}


def step_runs(runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "journal.db")
        with Engine(journal=path) as engine:
            empty, _ = eoflow_bytes(path)
            for handle in [engine.start(checkout, f"customer-{i % 97}", 100 + i)
                           for i in range(runs)]:
                handle.result(timeout=60)
        total, tables = eoflow_bytes(path)
        return {"bytes_per_run": round((total - empty) / runs), "tables": tables,
                "workflow_columns": column_bytes(
                    path, "eoflow_workflows", ["workflow_id", "name", "status", "inputs",
                                               "output"]),
                "step_columns": column_bytes(path, "eoflow_steps",
                                             ["workflow_id", "name", "kind", "output"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--size", type=int, default=1024, help="bytes per Kafka message value")
    args = parser.parse_args()
    kafka = kafka_runs(args.runs, args.size)
    steps = step_runs(args.runs)
    print(f"\n== Journal bytes per run ({args.runs} runs each; eoflow's tables and indexes)")
    print(f"Kafka workflow, {args.size}-byte message (a step + a transaction): "
          f"{kafka['bytes_per_run']:>6} bytes/run")
    print(f"3-step workflow, small inputs:                                  "
          f"{steps['bytes_per_run']:>6} bytes/run")
    for label, data in (("Kafka", kafka), ("3-step", steps)):
        print(f"  {label}: pages per table: {data['tables']}")
        print(f"  {label}: average bytes per column: runs {data['workflow_columns']}, "
              f"steps {data['step_columns']}")
    print("JSON " + json.dumps({"kafka": kafka, "three_steps": steps}, sort_keys=True))


if __name__ == "__main__":
    main()

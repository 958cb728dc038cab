"""DBOS Transact (SQLite) Kafka consumer throughput: messages applied per second.

The topic must already hold ``--count`` messages whose values are JSON with a
unique "id" (see fill_topic.py). A ``@DBOS.kafka_consumer`` workflow (group
``--group``, auto.offset.reset earliest, session.timeout.ms 6000,
heartbeat.interval.ms 1000) parses the message in a step, then calls a DBOS
transaction that inserts the id into an app table: the same workflow as
eoflow's in kafka_throughput.py. DBOS 3.x has no application database: transactions run through
``SQLAlchemyDatasource``, here on a separate SQLite file beside the SQLite
system database, both in a temp dir removed at exit.

DBOS's consumer (confluent-kafka) durably enqueues each consumed batch (up to
250) as workflows on a queue, then stores the offsets and lets auto-commit
flush them. By default that is a queue registered here with worker
concurrency ``--concurrency`` (20); 0 uses DBOS's internal unlimited Kafka
queue, which with thousands of waiting messages starts hundreds of workflow
threads at once, exhausts the datasource connection pool and fails
workflows. Queues are polled every ``--poll-interval`` seconds (DBOS default
1.0; also set as kafka_queue_polling_interval_sec).

Timed from just before DBOS.launch() until the last id was committed.
"steady_per_second" = (applied - 1) / (last apply - first apply), i.e. it
excludes launch, group join and the first message's latency. Every id is
checked: "duplicates" = rows - distinct ids. After ``--timeout`` seconds it
reports what it got with "complete": false. One JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import tempfile
import time
from importlib.metadata import version
from typing import Any

import sqlalchemy as sa
from dbos import DBOS, DBOSConfig, KafkaMessage, SQLAlchemyDatasource

QUEUE_NAME = "bench_kafka_queue"

DATABASE_URL: str | None = None  # --database-url: DBOS on PostgreSQL


def register_consumer(
    ds: SQLAlchemyDatasource, brokers: str, topic: str, group: str, queue: str | None
) -> None:
    """Declare the transaction and the consumer workflow (before launch)."""

    @ds.transaction()
    def apply_message(msg_id: str) -> None:
        ds.sql_session().execute(
            sa.text("INSERT INTO applied (id, applied_at) VALUES (:id, :at)"),
            {"id": msg_id, "at": time.time()},
        )

    config: dict[str, Any] = {
        "bootstrap.servers": brokers,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
    }

    @DBOS.step()
    def parse(value: bytes) -> str:
        return str(json.loads(value)["id"])

    @DBOS.kafka_consumer(config, [topic], queue_name=queue)
    @DBOS.workflow()
    def consume(msg: KafkaMessage) -> None:
        assert msg.value is not None
        apply_message(parse(msg.value))


def table_stats(path: str) -> tuple[int, int, float | None, float | None]:
    """(rows, distinct ids, first applied_at, last applied_at) of the app table."""
    with sqlite3.connect(path, timeout=30) as conn:
        row = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT id), MIN(applied_at), MAX(applied_at) FROM applied"
        ).fetchone()
    return int(row[0]), int(row[1]), row[2], row[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--brokers", required=True, help="HOST:PORT")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--poll-interval", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=20, help="0: DBOS internal queue")
    parser.add_argument("--settle", type=float, default=1.0, help="wait for duplicates")
    parser.add_argument("--database-url", help="a PostgreSQL system database (default: SQLite)")
    args = parser.parse_args()
    global DATABASE_URL
    DATABASE_URL = args.database_url

    tmpdir = tempfile.mkdtemp(prefix="dbos-bench-kafka-")
    app_path = os.path.join(tmpdir, "app.sqlite")
    try:
        with sqlite3.connect(app_path) as conn:
            conn.execute("CREATE TABLE applied (id TEXT NOT NULL, applied_at REAL NOT NULL)")
        # One pooled connection per concurrent workflow (SQLAlchemy's default is 5+10).
        pool = {"pool_size": max(args.concurrency, 5), "max_overflow": 10}
        ds = SQLAlchemyDatasource.create(f"sqlite:///{app_path}", engine_kwargs=pool)
        queue = QUEUE_NAME if args.concurrency > 0 else None
        register_consumer(ds, args.brokers, args.topic, args.group, queue)
        config: DBOSConfig = {
            "name": "eoflow-bench-kafka",
            "system_database_url": DATABASE_URL
        or f"sqlite:///{os.path.join(tmpdir, 'dbos.sqlite')}",
            "log_level": "WARNING",
            "enable_otlp": False,
            "kafka_queue_polling_interval_sec": args.poll_interval,
        }
        DBOS(config=config)
        launched_at = time.time()
        DBOS.launch()
        try:
            if queue is not None:  # queues are registered in the system DB after launch
                DBOS.register_queue(
                    queue,
                    worker_concurrency=args.concurrency,
                    polling_interval_sec=args.poll_interval,
                )
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                if table_stats(app_path)[1] >= args.count:
                    break
                time.sleep(0.05)
            stopped_at = time.time()
            complete = table_stats(app_path)[1] >= args.count
            if complete:
                time.sleep(args.settle)  # let any duplicate show up
            rows, distinct, first_at, last_at = table_stats(app_path)
        finally:
            DBOS.destroy()
            ds.engine.dispose()
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    end = last_at if complete and last_at is not None else stopped_at
    seconds = end - launched_at
    steady = (end - first_at) if first_at is not None else 0.0
    out: dict[str, Any] = {
        "system": "dbos",
        "version": version("dbos"),
        "storage": "postgresql" if DATABASE_URL else "sqlite",
        "bench": "kafka",
        "count": args.count,
        "applied": distinct,
        "duplicates": rows - distinct,
        "complete": complete,
        "seconds": round(seconds, 4),
        "per_second": round(distinct / seconds, 1) if seconds > 0 else 0.0,
        "first_applied_seconds": round(first_at - launched_at, 4) if first_at else None,
        "steady_seconds": round(steady, 4),
        "steady_per_second": round((distinct - 1) / steady, 1) if steady > 0 else None,
        "poll_interval": args.poll_interval,
        "concurrency": args.concurrency or None,
        "note": "app table written by a DBOS SQLAlchemyDatasource transaction (own SQLite file)",
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

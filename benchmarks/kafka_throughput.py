"""End-to-end Kafka throughput, one run, one broker: raw kafka-python, eoflow's transaction
path, eoflow's workflow path with a realistic workflow (parse the message in a step, then
insert a row in a @transaction), ordered per partition, per key (1,000 keys) and unordered,
and DBOS Transact's @DBOS.kafka_consumer with the same workflow on SQLite.

    python benchmarks/kafka_throughput.py [--dbos-python .venv-dbos/bin/python] [--count 50000]

Each system consumes its own copy of the same messages (~1 KB JSON) from a fresh topic with
--partitions partitions (4). "steady/s" counts from the first applied message to the last, so
the group join (seconds on any broker) is left out; "total/s" includes it. "CPU µs/msg" is this
process's CPU time (all its threads; the broker runs apart) from the start of consumption to
the last message, per message: unlike wall time, it carries across machines. eoflow runs at
full durability: a message is acknowledged to Kafka only after its record is fsynced; the
commit latency of the disk, measured first, is printed with the figures.

"one CPU" rows: the same, with the consuming process on one CPU only (as `taskset -c N eoflow
run app.py` would run it; the broker runs apart, anywhere). A workflow run's threads take
turns (a worker, the journal's writer, the next worker): on one CPU each turn is a switch on
a CPU that is awake, where across CPUs the next thread's may first have to be woken. DBOS runs
both ways too; the one-CPU rows are compared with the faster of its two figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import eoflow  # noqa: E402
from benchmarks.common import dump, fsync_ms, machine, on_cpu, one_cpu, run_peer  # noqa: E402
from benchmarks.peers.fill_topic import make_value  # noqa: E402
from eoflow import Engine, KafkaMessage, kafka_consume, step, transaction, workflow  # noqa: E402
from eoflow.devbroker import LocalBroker  # noqa: E402
from eoflow.engine.kafka.source import Producer, create_topic  # noqa: E402
from eoflow.journal.opening import open_reader  # noqa: E402


def fill(brokers: str, topic: str, count: int, partitions: int, keys: int = 0) -> None:
    """`count` ~1 KB messages; with `keys`, keyed by `keys` distinct customer ids."""
    create_topic((brokers,), topic, partitions)
    producer = Producer((brokers,))
    run = uuid.uuid4().hex[:8]
    for n in range(count):
        key = f"customer-{n % keys}".encode() if keys else None
        producer.send(topic, make_value(run, n, 1024), key=key)
    producer.flush()
    producer.close()


def raw_rate(brokers: str, topic: str, count: int) -> dict[str, float]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=[brokers], group_id=f"raw-{topic}",
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             session_timeout_ms=6000, heartbeat_interval_ms=1000,
                             max_poll_records=500)
    started, first, seen, cpu = time.perf_counter(), 0.0, 0, time.process_time()
    while seen < count:
        for records in consumer.poll(timeout_ms=500).values():
            if not first:
                first = time.perf_counter()
            for record in records:
                json.loads(record.value)
                seen += 1
    last, cpu = time.perf_counter(), time.process_time() - cpu
    consumer.close()
    return {"total": count / (last - started), "steady": (count - 1) / (last - first),
            "cpu_us": cpu / count * 1e6}


def eoflow_rate(brokers: str, topic: str, count: int, path: str, ordered: bool | str = True,
                timeout: float = 600, journal: str | None = None,
                cpu: int | None = None) -> dict[str, float]:
    """Consume `topic` through one eoflow path; rates from the recorded commit times. The
    journal is a temp SQLite file, or `journal` (an empty PostgreSQL database's URL, say).
    `cpu`: the engine's threads run on that CPU only."""
    group = f"eoflow-{path}-{topic}"
    mark = "%s" if journal and journal.startswith("postgres") else "?"  # psycopg's, or apsw's
    with tempfile.TemporaryDirectory() as folder:
        journal = journal or os.path.join(folder, "bench.db")
        if path == "transaction":
            @kafka_consume(topic, group_id=group)
            @transaction()
            def bench_apply(topic: str, partition: int, message: KafkaMessage) -> None:
                data = json.loads(message.value or b"")
                eoflow.db().execute(f"INSERT INTO applied VALUES ({mark}, {mark})",
                                    (data["id"], time.time()))
            handler: Any = bench_apply
        else:
            @step()
            def bench_parse(value: bytes) -> str:
                return str(json.loads(value)["id"])

            @transaction()
            def bench_record(order_id: str) -> None:
                eoflow.db().execute(f"INSERT INTO applied VALUES ({mark}, {mark})",
                                    (order_id, time.time()))

            @kafka_consume(topic, group_id=group, ordered=ordered)
            @workflow()
            def bench_flow(topic: str, partition: int, message: KafkaMessage) -> None:
                bench_record(bench_parse(message.value or b"{}"))
            handler = bench_flow
        with on_cpu(cpu), Engine(journal=journal) as engine:
            engine.runtime.txstore.committer.write(
                lambda c: c.execute("CREATE TABLE applied (id TEXT, at DOUBLE PRECISION)"))
            started, cpu = time.time(), time.process_time()
            engine.consume(handler, brokers=brokers)
            table, where = (("applied", "") if path == "transaction"
                            else ("eoflow_workflows", " WHERE status = 'SUCCESS'"))
            column = "at" if path == "transaction" else "updated_ms / 1000.0"
            done, first, last = 0, 0.0, 0.0
            reader = open_reader(journal)  # watched from apart: a scan on the engine's writer
            try:  # would hold up the commits queued behind it
                while done < count and time.time() - started < timeout:
                    time.sleep(0.2)  # a count from an index: this process's CPU is measured
                    done = reader.rows(f"SELECT count(*) FROM {table}{where}")[0][0]
                cpu = time.process_time() - cpu
                done, first, last = reader.rows(
                    f"SELECT count(*), min({column}), max({column}) FROM {table}{where}")[0]
            finally:
                reader.close()
    if not done:
        raise SystemExit(f"eoflow {path} path applied nothing in {timeout:.0f}s")
    first, last = float(first), float(last)  # PostgreSQL's division gives a Decimal
    return {"total": done / (last - started), "steady": (done - 1) / (last - first),
            "applied": done, "cpu_us": cpu / max(done, 1) * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dbos-python", help="python of a venv with dbos + confluent-kafka")
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--dbos-count", type=int, default=3000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        commit_ms = fsync_ms(folder)
    with LocalBroker() as broker:
        brokers = broker.address
        topics = {name: f"bench-{name}-{uuid.uuid4().hex[:6]}"
                  for name in ("raw", "tx", "wf", "wf_key", "wf_unordered", "wf_cpu",
                               "wf_unordered_cpu", "dbos", "dbos_cpu")}
        for name, topic in topics.items():
            fill(brokers, topic, args.dbos_count if name.startswith("dbos") else args.count,
                 args.partitions, keys=1000 if name == "wf_key" else 0)
        results["raw"] = raw_rate(brokers, topics["raw"], args.count)
        results["transaction"] = eoflow_rate(brokers, topics["tx"], args.count, "transaction")
        results["workflow"] = eoflow_rate(brokers, topics["wf"], args.count, "workflow")
        results["workflow_by_key"] = eoflow_rate(brokers, topics["wf_key"], args.count,
                                                 "workflow", ordered="key")
        results["workflow_unordered"] = eoflow_rate(brokers, topics["wf_unordered"], args.count,
                                                    "workflow", ordered=False)
        cpu = one_cpu()
        if cpu is not None:
            results["workflow_one_cpu"] = eoflow_rate(brokers, topics["wf_cpu"], args.count,
                                                      "workflow", cpu=cpu)
            results["workflow_unordered_one_cpu"] = eoflow_rate(
                brokers, topics["wf_unordered_cpu"], args.count, "workflow", ordered=False,
                cpu=cpu)
        for name, on in (("dbos", None), ("dbos_cpu", cpu))[:1 if cpu is None else 2]:
            results[name] = run_peer(args.dbos_python, "dbos_kafka.py", "--brokers", brokers,
                                     "--topic", topics[name], "--count", str(args.dbos_count),
                                     "--group", f"dbos-{topics[name]}", cpu=on)
    dbos = results["dbos"].get("steady_per_second")
    dbos_cpu = results.get("dbos_cpu", {}).get("steady_per_second")
    best = max(dbos or 0, dbos_cpu or 0)
    print(f"\n== Kafka end to end, {args.count} messages of 1 KB, {args.partitions} partitions; "
          f"workflow = a step + a transaction; one durable commit here takes {commit_ms:.2f} ms "
          f"({machine()})")
    print(f"{'':46} {'steady/s':>10} {'total/s':>10} {'CPU µs/msg':>11} {'vs DBOS':>9}")
    rows = [("kafka-python consume only (no processing)", results["raw"]),
            ("eoflow transaction path", results["transaction"]),
            ("eoflow workflow path (ordered per partition)", results["workflow"]),
            ("eoflow workflow path (ordered per key)", results["workflow_by_key"]),
            ("eoflow workflow path (unordered)", results["workflow_unordered"])]
    if cpu is not None:
        rows += [(f"... ordered per partition, one CPU ({cpu})", results["workflow_one_cpu"]),
                 (f"... unordered, one CPU ({cpu})", results["workflow_unordered_one_cpu"])]
    for label, figures in rows:
        against = best if "one CPU" in label else dbos
        ratio = f"{figures['steady'] / against:8.0f}x" if against and label[0] in "e." else ""
        print(f"{label:46} {figures['steady']:10.0f} {figures['total']:10.0f} "
              f"{figures['cpu_us']:11.0f} {ratio:>9}")
    if dbos:
        print(f"{'DBOS @DBOS.kafka_consumer (' + str(args.dbos_count) + ' msgs)':46} "
              f"{dbos:10.0f} {results['dbos']['per_second']:10.0f}")
    else:
        print(f"DBOS: {results['dbos']}")
    if dbos_cpu:
        print(f"{'... one CPU (' + str(cpu) + ')':46} "
              f"{dbos_cpu:10.0f} {results['dbos_cpu']['per_second']:10.0f}")
    dump("kafka", {**results, "commit_ms": commit_ms})


if __name__ == "__main__":
    main()

"""Soak: the Kafka workflow path at full speed for minutes with retention on; the journal's size
must plateau, and its WAL stay bounded while an `eoflow status --watch` reader is attached.

    python benchmarks/soak.py [--minutes 10] [--every 30] [--retention 60s] [--size 1024]

A real `eoflow run` process consumes a 4-partition topic of the embedded broker; each message
starts a workflow that parses it in a step and upserts a row in a @transaction (into a table
bounded at 10,000 rows, plus a counter of applications). A producer in this process keeps
the consumer's backlog near --backlog messages, so it runs at full speed without the broker's
memory growing. Every --every seconds it prints the journal file and WAL sizes, the runs kept,
the free pages and the rate of applied messages over the interval. At the end it stops
producing, waits for the backlog to drain and checks that the counter equals the messages
produced: exactly once, with retention forgetting runs all along.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import apsw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import dump, fsync_ms, machine  # noqa: E402
from benchmarks.peers.fill_topic import make_value  # noqa: E402
from eoflow.devbroker import LocalBroker  # noqa: E402
from eoflow.engine.kafka.source import Producer, create_topic  # noqa: E402

APP = textwrap.dedent("""
    import json
    import eoflow
    from eoflow import KafkaMessage, kafka_consume, step, transaction, workflow

    @step()
    def parse(value):
        order = json.loads(value)
        return {"id": order["n"], "size": len(value)}

    @transaction()
    def record(order):
        db = eoflow.db()
        db.execute("CREATE TABLE IF NOT EXISTS soak_orders (slot INTEGER PRIMARY KEY, id, size)")
        db.execute("CREATE TABLE IF NOT EXISTS soak_applied (one INTEGER PRIMARY KEY, n)")
        db.execute("INSERT INTO soak_orders VALUES (?, ?, ?) ON CONFLICT (slot) DO UPDATE "
                   "SET id = excluded.id, size = excluded.size",
                   (order["id"] % 10000, order["id"], order["size"]))
        db.execute("INSERT INTO soak_applied VALUES (1, 1) ON CONFLICT (one) DO UPDATE "
                   "SET n = n + 1")
        return order["id"]

    @kafka_consume(TOPIC, group_id="soak")
    @workflow()
    def on_order(topic, partition, message: KafkaMessage):
        return record(parse(message.value))
""")


def sample(journal: str) -> dict[str, Any]:
    """Sizes and counts, read from a snapshot while the app runs."""
    conn = apsw.Connection(journal, flags=apsw.SQLITE_OPEN_READONLY)
    conn.setbusytimeout(5000)
    try:
        def one(query: str) -> Any:
            rows = conn.execute(query).fetchall()
            return rows[0][0] if rows else None

        return {
            "file_bytes": os.path.getsize(journal),
            "wal_bytes": os.path.getsize(journal + "-wal") if os.path.exists(
                journal + "-wal") else 0,
            "free_pages": one("PRAGMA freelist_count"),
            "runs": one("SELECT count(*) FROM eoflow_workflows"),
            "recorded": one("SELECT coalesce(sum(messages), 0) FROM eoflow_kafka_offsets") or 0,
            "applied": (one("SELECT n FROM soak_applied") or 0) if one(
                "SELECT 1 FROM sqlite_master WHERE name = 'soak_applied'") else 0,
        }
    finally:
        conn.close()


def mib(n: int) -> str:
    return f"{n / 1048576:8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=30.0)
    parser.add_argument("--retention", default="60s")
    parser.add_argument("--size", type=int, default=1024, help="bytes per message")
    parser.add_argument("--backlog", type=int, default=10_000)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="eoflow-soak-")
    journal = os.path.join(folder, "soak.db")
    topic = f"soak-{uuid.uuid4().hex[:6]}"
    app = os.path.join(folder, "soak_app.py")
    Path(app).write_text(APP.replace("TOPIC", repr(topic)))
    commit_ms = fsync_ms(folder)
    print(f"== Soak: Kafka workflow path (a step + a transaction), {args.size}-byte messages, "
          f"4 partitions, retention {args.retention}, `eoflow status --watch` attached; "
          f"one durable commit here takes {commit_ms:.2f} ms ({machine()})", flush=True)
    print(f"{'elapsed':>7} {'file MiB':>9} {'WAL MiB':>8} {'runs kept':>10} {'free pages':>11} "
          f"{'msgs/s':>8} {'applied':>10}", flush=True)
    samples: list[dict[str, Any]] = []
    with LocalBroker() as broker:
        create_topic((broker.address,), topic, 4)
        producer = Producer((broker.address,))
        cli = [sys.executable, "-m", "eoflow.cli.main"]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        run = subprocess.Popen([*cli, "run", app, "--journal", journal, "--brokers",
                                broker.address, "--retention", args.retention],
                               stdout=subprocess.DEVNULL, stderr=open(  # noqa: SIM115
                                   os.path.join(folder, "run.log"), "w"), env=env)
        watcher: subprocess.Popen[bytes] | None = None
        produced, started, last = 0, time.time(), (time.time(), 0)
        next_sample = started + args.every
        try:
            while time.time() - started < args.minutes * 60:
                state = sample(journal) if os.path.exists(journal) else {"applied": 0}
                if watcher is None and os.path.exists(journal):
                    watcher = subprocess.Popen([*cli, "status", "--watch", "--json",
                                                "--journal", journal],
                                               stdout=subprocess.DEVNULL, env=env)
                for n in range(produced, min(produced + 5000,
                                             state["applied"] + args.backlog)):
                    producer.send(topic, make_value(topic, n, args.size))
                    produced += 1
                producer.flush()
                if run.poll() is not None:
                    raise SystemExit(f"eoflow run exited ({run.returncode}); see {folder}/run.log")
                if time.time() >= next_sample:
                    now = time.time()
                    rate = (state["applied"] - last[1]) / (now - last[0])
                    last = (now, state["applied"])
                    state = {**state, "minute": (now - started) / 60, "per_second": rate}
                    samples.append(state)
                    elapsed = int(now - started)
                    print(f"{elapsed // 60:4}:{elapsed % 60:02} {mib(state['file_bytes'])} "
                          f"{mib(state['wal_bytes'])} {state['runs']:10} "
                          f"{state['free_pages']:11} {rate:8.0f} {state['applied']:10}",
                          flush=True)
                    next_sample += args.every
                time.sleep(0.2)
            deadline = time.time() + 300  # drain: every message produced is applied once
            while sample(journal)["applied"] < produced and time.time() < deadline:
                time.sleep(0.5)
            final = sample(journal)
        finally:
            for process in (watcher, run):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=60)
            producer.close()
    log = Path(folder, "run.log").read_text()
    batches = [float(ms) for ms in re.findall(r"longest batch ([0-9.]+) ms", log)]
    longest = max(batches, default=0.0)
    ranked = sorted(batches) or [0.0]
    print(f"retention: {len(batches)} prune passes; the longest batch of a pass held the "
          f"journal's writer {ranked[len(ranked) // 2]:.1f} ms (median), "
          f"{ranked[int(len(ranked) * 0.9)]:.1f} ms (90th percentile), {longest:.1f} ms "
          f"(worst)", flush=True)
    once = final["applied"] == produced
    print(f"produced {produced}, applied {final['applied']} (exactly once: {once}); "
          f"journal {mib(final['file_bytes']).strip()} MiB, peak WAL "
          f"{mib(max(s['wal_bytes'] for s in samples) if samples else 0).strip()} MiB",
          flush=True)
    dump("soak", {"commit_ms": commit_ms, "longest_prune_batch_ms": longest,
                  "samples": samples, "produced": produced, "applied": final["applied"],
                  "args": vars(args)})
    if not once:
        raise SystemExit("applied count differs from produced count")


if __name__ == "__main__":
    main()

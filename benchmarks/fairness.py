"""Both Kafka paths in one app, at once: does a slow transaction handler starve the workflows?

    python benchmarks/fairness.py [--slow 1000] [--workflows 1000] [--handler-ms 2]

One engine consumes two topics together: a transaction path whose handler takes --handler-ms
per message (a slow database call), and a one-step workflow path. It prints the workflow path's
rate while the slow transactions run, with eoflow's writer budget (a transaction of handlers
holds the journal's single writer for about 50 ms) and without it (one transaction a polled
batch, as before the budget), and the fsync latency measured on this disk. This is about
eoflow's two paths sharing one writer, so there is no DBOS figure to compare with.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import eoflow  # noqa: E402
from benchmarks.common import dump, fsync_ms, machine  # noqa: E402
from benchmarks.kafka_throughput import fill  # noqa: E402
from eoflow import Engine, KafkaMessage, kafka_consume, step, transaction, workflow  # noqa: E402
from eoflow.devbroker import LocalBroker  # noqa: E402
from eoflow.engine.kafka import applying  # noqa: E402
from eoflow.testing import isolated_definitions  # noqa: E402


def together(brokers: str, slow: int, fast: int, handler_ms: float,
             budget: float | None) -> dict[str, Any]:
    tx_topic, wf_topic = f"fair-tx-{uuid.uuid4().hex[:6]}", f"fair-wf-{uuid.uuid4().hex[:6]}"
    fill(brokers, tx_topic, slow, 3)
    fill(brokers, wf_topic, fast, 3)
    with isolated_definitions(), tempfile.TemporaryDirectory() as folder:
        @kafka_consume(tx_topic, group_id=f"g-{tx_topic}")
        @transaction()
        def fair_slow(topic: str, partition: int, message: KafkaMessage) -> None:
            time.sleep(handler_ms / 1000)
            eoflow.db().execute("INSERT INTO applied VALUES (?)", (time.time(),))

        @step()
        def fair_parse(value: bytes) -> int:
            return len(value)

        @kafka_consume(wf_topic, group_id=f"g-{wf_topic}")
        @workflow()
        def fair_flow(topic: str, partition: int, message: KafkaMessage) -> int:
            return fair_parse(message.value or b"")

        saved = applying.TX_BATCH_BUDGET
        applying.TX_BATCH_BUDGET = budget  # type: ignore[assignment]
        try:
            with Engine(journal=os.path.join(folder, "fair.db")) as engine:
                engine.runtime.txstore.committer.write(
                    lambda c: c.execute("CREATE TABLE applied (at REAL)"))
                engine.consume(fair_slow, fair_flow, brokers=brokers)
                started = time.time()
                flows = txs = 0
                while (flows < fast or txs < slow) and time.time() - started < 600:
                    time.sleep(0.2)
                    flows, first, last = engine.journal.committer.read(lambda c: c.execute(
                        "SELECT count(*), min(updated_ms) / 1000.0, max(updated_ms) / 1000.0 "
                        "FROM eoflow_workflows WHERE status = 'SUCCESS'").fetchall()[0])
                    txs, tx_first, tx_last = engine.journal.committer.read(
                        lambda c: c.execute("SELECT count(*), min(at), max(at) FROM applied"
                                            ).fetchall()[0])
                during = engine.journal.committer.read(lambda c: c.execute(
                    "SELECT count(*) FROM eoflow_workflows WHERE status = 'SUCCESS' "
                    "AND updated_ms / 1000.0 BETWEEN ? AND ?", (tx_first, tx_last)
                ).fetchall()[0][0])
        finally:
            applying.TX_BATCH_BUDGET = saved
    window = tx_last - tx_first
    return {"workflows_per_second_during": during / window if window > 0 else 0.0,
            "workflows_during": during, "transactions_window_s": window,
            "workflows_done_at": last - started, "transactions_done_at": tx_last - started,
            "workflows": flows, "transactions": txs, "first_workflow_at": first - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slow", type=int, default=3000, help="slow transaction messages")
    parser.add_argument("--workflows", type=int, default=3000, help="workflow messages")
    parser.add_argument("--handler-ms", type=float, default=2.0)
    parser.add_argument("--dbos-python", help="accepted for run_all.py; unused (no DBOS here)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        commit = fsync_ms(folder)
    results: dict[str, Any] = {"fsync_ms": commit}
    with LocalBroker() as broker:
        for name, budget in (("with budget", applying.TX_BATCH_BUDGET), ("without", None)):
            results[name] = together(broker.address, args.slow, args.workflows,
                                     args.handler_ms, budget)
    print(f"\n== Both paths at once: {args.slow} transactions of {args.handler_ms:g} ms and "
          f"{args.workflows} one-step workflows ({machine()}; one commit: {commit:.2f} ms)")
    print("workflows/s while the slow transactions ran (and how many of them then), and when "
          "each path finished, from the start")
    print(f"{'':28} {'wf/s during':>12} {'wf during':>10} {'wf end':>8} {'tx end':>8}")
    for name in ("with budget", "without"):
        row = results[name]
        print(f"{'writer budget ' + name:28} {row['workflows_per_second_during']:12.0f} "
              f"{row['workflows_during']:10d} {row['workflows_done_at']:7.1f}s "
              f"{row['transactions_done_at']:7.1f}s")
    dump("fairness", results)


if __name__ == "__main__":
    main()

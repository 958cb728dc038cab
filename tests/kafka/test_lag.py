"""Observing consumers on a real broker. `eoflow status --lag`: per group and partition, the
journal's last offset, the group's committed offset, the end offset and the lag, with a known
backlog. A message's W3C traceparent header: the parent of its run's trace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from eoflow import Engine, KafkaMessage, kafka_consume, step, transaction, workflow
from eoflow.engine.kafka.source import Producer, partition_offsets
from tests.portable import journal_sql

from .conftest import new_topic, produce, produce_ids, wait_until


def test_status_lag_shows_the_backlog_per_partition(broker: str, tmp_path: Path) -> None:
    topic = new_topic(broker, partitions=2)
    journal = str(tmp_path / "j.db")

    @kafka_consume(topic, group_id=f"lag-{topic}")
    @transaction()
    def lag_apply(topic: str, partition: int, message: KafkaMessage) -> None:
        pass

    for partition in (0, 1):  # both partitions: keyless sends may all land on one
        produce(broker, topic, [b"{}"] * 5, partition=partition)
    with Engine(journal=journal) as engine:
        engine.consume(lag_apply, brokers=broker)
        wait_until(lambda: sum(int(n) for (n,) in journal_sql(
            journal, "SELECT messages FROM eoflow_kafka_offsets")) == 10, what="10 applied")
        # ... and committed to the group (the loop commits at its next poll, once durable):
        # the lag below is counted from the group's offsets.
        wait_until(lambda: sum(committed or 0 for _, committed in partition_offsets(
            (broker,), f"lag-{topic}", [topic]).values()) == 10, 30, "10 committed")
    # The backlog: 3 on partition 0, 2 on partition 1, one batch each (the embedded broker
    # answers a batch's first offset + 1 as the end of a partition: see the README).
    for partition, backlog in ((0, 3), (1, 2)):
        for _ in range(backlog):
            produce(broker, topic, [b"{}"], partition=partition)
    done = subprocess.run(
        [sys.executable, "-m", "eoflow.cli.main", "status", "--journal", journal, "--lag",
         "--brokers", broker, "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = {r["partition"]: r for r in json.loads(done.stdout)["lag"]}
    assert sorted(rows) == [0, 1] and {r["group"] for r in rows.values()} == {f"lag-{topic}"}
    for partition, backlog in ((0, 3), (1, 2)):
        row = rows[partition]
        assert row["lag"] == backlog, rows
        assert row["end"] == row["journal_offset"] + 1 + backlog
        # The group's offset as the broker tells it. Right after the group's last member left,
        # the embedded broker has (rarely, in full suites) answered none: the lag then counts
        # from the journal's offset instead (journal/views.py, lag_view), and comes out the same.
        assert row["committed"] in (None, row["journal_offset"] + 1), rows
    shown = subprocess.run(
        [sys.executable, "-m", "eoflow.cli.main", "status", "--journal", journal, "--lag",
         "--brokers", broker], capture_output=True, text=True, timeout=60)
    assert "Kafka consumer lag" in shown.stdout
    offline = subprocess.run(
        [sys.executable, "-m", "eoflow.cli.main", "status", "--journal", journal, "--json"],
        capture_output=True, text=True, timeout=60)
    assert "lag" not in json.loads(offline.stdout)  # without --lag, no broker is asked


@step()
def tp_step(value: bytes) -> int:
    return len(value)


def test_a_traceparent_header_parents_the_run(broker: str, tmp_path: Path) -> None:
    from eoflow.engine.otel import Telemetry

    assert not Telemetry.recording()  # no SDK in this process (see below)
    topic = new_topic(broker)
    journal = str(tmp_path / "j.db")
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    @kafka_consume(topic, group_id=f"tp-{topic}")
    @workflow()
    def tp_flow(topic: str, partition: int, message: KafkaMessage) -> int:
        return tp_step(message.value or b"")

    producer = Producer((broker,))
    try:
        producer.send(topic, b"traced", partition=0,
                      headers=[("traceparent", parent.encode())])
        producer.send(topic, b"plain", partition=0)
        producer.flush()
    finally:
        producer.close()
    with Engine(journal=journal) as engine:
        engine.consume(tp_flow, brokers=broker)
        wait_until(lambda: journal_sql(
            journal, "SELECT count(*) FROM eoflow_workflows WHERE status = 'SUCCESS'"
        ) == [(2,)], what="2 runs")
    contexts = dict(journal_sql(journal, "SELECT workflow_id, trace_context "
                                         "FROM eoflow_workflows ORDER BY workflow_id"))
    # No SDK in this process: the run's start traces nothing of its own, and keeps the
    # message's context as its parent (with an SDK, its start span's: tests/integration).
    assert contexts[f"kafka:{topic}:0:0:tp-{topic}"] == parent
    assert contexts[f"kafka:{topic}:0:1:tp-{topic}"] is None


def test_the_lag_metric_follows_a_draining_backlog(broker: str, tmp_path: Path) -> None:
    from tests.integration.test_metrics import free_port, value

    topic = new_topic(broker, partitions=1)
    produce_ids(broker, topic, range(20))
    port = free_port()
    env = dict(os.environ, LAG_BROKER=broker, LAG_TOPIC=topic)
    app = Path(__file__).parent / "apps" / "lagging_app.py"
    process = subprocess.Popen([sys.executable, "-m", "eoflow.cli.main", "run", str(app),
                                "--journal", str(tmp_path / "j.db"), "--metrics-port",
                                str(port)], env=env, stderr=subprocess.DEVNULL)
    seen: list[float] = []

    def scrape() -> bool:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                          timeout=5).read().decode()
        except OSError:
            return False
        if "eoflow_kafka_consumer_lag{" not in text:
            return False
        seen.append(value(text, "eoflow_kafka_consumer_lag", topic=topic, partition="0"))
        recorded = value(text, "eoflow_kafka_messages_recorded_total", 0,
                         consumer="Lagging.lg_apply")
        return recorded == 20
    try:
        wait_until(scrape, what="20 recorded")
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert max(seen) >= 5, seen  # a backlog was seen draining (20 messages, 1 per poll)
    assert seen[-1] == 0 and seen == sorted(seen, reverse=True), seen

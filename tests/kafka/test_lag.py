"""`eoflow status --lag`: per group and partition, the journal's last offset, the group's
committed offset, the end offset and the lag, asked from a real broker with a known backlog."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from eoflow import Engine, KafkaMessage, kafka_consume, transaction
from tests.portable import journal_sql

from .conftest import new_topic, produce, produce_ids, wait_until


def test_status_lag_shows_the_backlog_per_partition(broker: str, tmp_path: Path) -> None:
    topic = new_topic(broker, partitions=2)
    journal = str(tmp_path / "j.db")

    @kafka_consume(topic, group_id=f"lag-{topic}")
    @transaction()
    def lag_apply(topic: str, partition: int, message: KafkaMessage) -> None:
        pass

    produce_ids(broker, topic, range(10))
    with Engine(journal=journal) as engine:
        engine.consume(lag_apply, brokers=broker)
        wait_until(lambda: sum(int(n) for (n,) in journal_sql(
            journal, "SELECT messages FROM eoflow_kafka_offsets")) == 10, what="10 applied")
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
        assert row["end"] == row["committed"] + backlog == row["journal_offset"] + 1 + backlog
    shown = subprocess.run(
        [sys.executable, "-m", "eoflow.cli.main", "status", "--journal", journal, "--lag",
         "--brokers", broker], capture_output=True, text=True, timeout=60)
    assert "Kafka consumer lag" in shown.stdout
    offline = subprocess.run(
        [sys.executable, "-m", "eoflow.cli.main", "status", "--journal", journal, "--json"],
        capture_output=True, text=True, timeout=60)
    assert "lag" not in json.loads(offline.stdout)  # without --lag, no broker is asked

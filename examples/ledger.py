"""A ledger kept by the transaction path: each message on `payments` or `refunds` is applied to
the `ledger` table in one SQLite transaction together with its idempotency key, so a message is
applied exactly once. A message that is not valid JSON is quarantined after 3 attempts instead
of blocking the partition (see `eoflow status`).

    eoflow run examples/ledger.py --brokers 127.0.0.1:9092
    echo '{"account": "alice", "cents": 500}' | eoflow produce payments
"""

from __future__ import annotations

import json

import eoflow
from eoflow import KafkaMessage, kafka_consume, transaction


@kafka_consume(["payments", "refunds"], group_id="ledger", max_attempts=3)
@transaction()
def apply(topic: str, partition: int, message: KafkaMessage) -> None:
    entry = json.loads(message.value or b"")
    sign = -1 if topic == "refunds" else 1
    db = eoflow.db()
    db.execute("CREATE TABLE IF NOT EXISTS ledger (account TEXT, cents INTEGER, topic TEXT,"
               " partition INTEGER, offset INTEGER)")
    db.execute("INSERT INTO ledger VALUES (?, ?, ?, ?, ?)",
               (entry["account"], sign * int(entry["cents"]), topic, partition, message.offset))

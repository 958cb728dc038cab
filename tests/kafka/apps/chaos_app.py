"""The chaos test's app: both paths count every message id they apply.

Topics and groups come from CHAOS_WF_TOPIC / CHAOS_TX_TOPIC (fresh per test run).
"""

from __future__ import annotations

import json
import os
import time

import eoflow
from eoflow import KafkaMessage, kafka_consume, step, transaction, workflow

WF_TOPIC = os.environ["CHAOS_WF_TOPIC"]
TX_TOPIC = os.environ["CHAOS_TX_TOPIC"]
PATHS = os.environ.get("CHAOS_PATHS", "wf,tx").split(",")  # the consumers to run
STEP_SLEEP = float(os.environ.get("CHAOS_STEP_SLEEP", "0"))  # seconds: runs in flight longer


def sql(text: str, params: tuple[object, ...] = ()) -> None:
    """Run `text` on eoflow.db(), written with SQLite's `?` (psycopg's is `%s`)."""
    db = eoflow.db()
    db.execute(text.replace("?", "%s") if type(db).__module__.startswith("psycopg") else text,
               params)


@eoflow.on_start
@transaction()
def create_tables() -> None:
    if type(eoflow.db()).__module__.startswith("psycopg"):
        # Engines starting at once would race in CREATE TABLE IF NOT EXISTS, which
        # PostgreSQL may answer with a unique violation (pg_type) for all but one.
        sql("SELECT pg_advisory_xact_lock(4242)")
    sql("CREATE TABLE IF NOT EXISTS wf_counts (id INTEGER PRIMARY KEY, n INTEGER)")
    sql("CREATE TABLE IF NOT EXISTS tx_counts (id INTEGER PRIMARY KEY, n INTEGER)")
    sql("CREATE TABLE IF NOT EXISTS wf_order (id INTEGER, part INTEGER, off INTEGER, "
        "at_ns BIGINT)")


@step()
def parse(value: bytes) -> int:
    if STEP_SLEEP:
        time.sleep(STEP_SLEEP)
    return int(json.loads(value)["id"])


@transaction()
def count_wf(message_id: int, partition: int, offset: int) -> None:
    sql("INSERT INTO wf_counts VALUES (?, 1) ON CONFLICT (id) DO UPDATE SET n = wf_counts.n + 1",
        (message_id,))
    # When it was applied (this host's clock, shared by its processes): the test checks that
    # each partition's messages were applied in offset order.
    sql("INSERT INTO wf_order VALUES (?, ?, ?, ?)", (message_id, partition, offset,
                                                   time.time_ns()))


@workflow()
def on_event(topic: str, partition: int, message: KafkaMessage) -> int:
    message_id = parse(message.value)
    count_wf(message_id, partition, message.offset)
    return message_id


@transaction()
def on_payment(topic: str, partition: int, message: KafkaMessage) -> None:
    message_id = int(json.loads(message.value or b"")["id"])
    sql("INSERT INTO tx_counts VALUES (?, 1) ON CONFLICT (id) DO UPDATE SET n = tx_counts.n + 1",
        (message_id,))


if "wf" in PATHS:
    kafka_consume(WF_TOPIC, group_id=f"chaos-wf-{WF_TOPIC}")(on_event)
if "tx" in PATHS:
    kafka_consume(TX_TOPIC, group_id=f"chaos-tx-{TX_TOPIC}")(on_payment)

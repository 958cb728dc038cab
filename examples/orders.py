"""Order processing, the demo's app: each message on the `orders` topic starts a workflow that
reserves stock, charges a (flaky) payment gateway with retries, and records the order in a
SQLite transaction -- exactly once per message, even if the process is killed mid-stream.

    eoflow run examples/orders.py --brokers 127.0.0.1:9092
    eoflow produce orders --count 100 --brokers 127.0.0.1:9092

The `orders` table (in the journal file, next to eoflow's own tables) gets one row per order;
`applied` counts how many times each order's transaction ran: it must always be 1.
"""

from __future__ import annotations

import json
import random

import eoflow
from eoflow import KafkaMessage, kafka_consume, step, transaction, workflow


@eoflow.on_start
@transaction()
def create_tables() -> None:
    eoflow.db().execute(
        "CREATE TABLE IF NOT EXISTS orders (order_id INTEGER PRIMARY KEY, amount_cents INTEGER,"
        " reservation TEXT, payment TEXT, applied INTEGER NOT NULL DEFAULT 0)")


@step()
def reserve_stock(order_id: int) -> str:
    return f"res-{order_id}"


@step(max_attempts=5, retry_interval=0.05, backoff=2.0)
def charge_card(order_id: int, amount_cents: int) -> str:
    if random.random() < 0.05:  # the payment gateway fails now and then; retries absorb it
        raise ConnectionError("payment gateway timed out")
    return f"pay-{order_id}-{amount_cents}"


@transaction()
def record_order(order_id: int, amount_cents: int, reservation: str, payment: str) -> None:
    eoflow.db().execute(
        "INSERT INTO orders (order_id, amount_cents, reservation, payment, applied) "
        "VALUES (?, ?, ?, ?, 1) ON CONFLICT (order_id) DO UPDATE SET applied = applied + 1",
        (order_id, amount_cents, reservation, payment))


@kafka_consume("orders", group_id="order-service")
@workflow()
def process_order(topic: str, partition: int, message: KafkaMessage) -> str:
    order = json.loads(message.value or b"{}")
    order_id = int(order["id"])
    amount = int(order.get("amount_cents", 100 + order_id % 900))
    reservation = reserve_stock(order_id)
    payment = charge_card(order_id, amount)
    record_order(order_id, amount, reservation, payment)
    return payment


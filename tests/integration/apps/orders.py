"""An order-processing app for crash tests. Every step execution is appended to the file named
by SIDE_EFFECTS, so a test can tell whether a step ran again after a crash.

    python orders.py JOURNAL COUNT [WORKERS] [STEP_SLEEP]
"""

from __future__ import annotations

import os
import sys
import time

import eoflow
from eoflow import Engine, step, transaction, workflow

SLEEP = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0


def note(event: str) -> None:
    fd = os.open(os.environ["SIDE_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event}\n".encode())
    finally:
        os.close(fd)
    if SLEEP:
        time.sleep(SLEEP)


@step()
def reserve(order_id: str) -> str:
    note(f"{order_id} reserve")
    return f"r-{order_id}"


@step()
def charge(order_id: str, amount: int) -> int:
    note(f"{order_id} charge")
    return amount * 100


@transaction()
def record_payment(order_id: str, cents: int) -> int:
    mark = "%s" if sys.argv[1].startswith("postgresql://") else "?"  # psycopg's, or apsw's
    eoflow.db().execute(f"INSERT INTO payments(order_id, cents) VALUES ({mark}, {mark})",
                        (order_id, cents))
    return cents


@step()
def ship(order_id: str) -> str:
    note(f"{order_id} ship")
    return "shipped"


@workflow()
def process_order(order_id: str, amount: int) -> dict:
    reservation = reserve(order_id)
    cents = charge(order_id, amount)
    record_payment(order_id, cents)
    return {"order": order_id, "reservation": reservation, "cents": cents,
            "status": ship(order_id)}


@transaction()
def create_tables() -> None:
    eoflow.db().execute("CREATE TABLE IF NOT EXISTS payments(order_id TEXT, cents INTEGER)")


def main() -> None:
    journal, count = sys.argv[1], int(sys.argv[2])
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    with Engine(journal=journal, workers=workers) as engine:
        create_tables()
        handles = [engine.start(process_order, f"o{i}", i, workflow_id=f"order-{i}")
                   for i in range(count)]
        for handle in handles:
            handle.result(timeout=120)
    print("done")


if __name__ == "__main__":
    main()

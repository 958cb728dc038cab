"""The shop before the change (see shop_v2.py and the README's "Upgrading workflows").

    eoflow run examples/upgrade/shop_v1.py --app-version shop

A checkout reserves the order, waits for its payment (a message), then charges it."""

from __future__ import annotations

import eoflow


@eoflow.transaction()
def create_tables() -> None:
    eoflow.db().execute("CREATE TABLE IF NOT EXISTS charges "
                        "(order_id TEXT PRIMARY KEY, how TEXT NOT NULL)")


@eoflow.on_start
def setup() -> None:
    create_tables()


@eoflow.step()
def reserve(order: str) -> str:
    return f"reserved {order}"


@eoflow.transaction()
def charge(order: str) -> str:
    eoflow.db().execute("INSERT INTO charges VALUES (?, 'plain')", (order,))
    return "plain"


@eoflow.workflow()
def checkout(order: str) -> str:
    reserve(order)
    eoflow.recv("paid", timeout=3600)
    how = charge(order)
    return f"{order} charged {how}"

"""The shop after the change: orders are charged with tax. Checkouts that were paid and
charged under shop_v1.py replay as they ran; those that reach the charge now take the tax.

    eoflow verify examples/upgrade/shop_v2.py --journal eoflow.db   # before the deploy
    eoflow run examples/upgrade/shop_v2.py --app-version shop       # the same version: the
                                                                    # patch decides, per run"""

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


@eoflow.transaction()
def charge_with_tax(order: str) -> str:
    eoflow.db().execute("INSERT INTO charges VALUES (?, 'with tax')", (order,))
    return "with tax"


@eoflow.workflow()
def checkout(order: str) -> str:
    reserve(order)
    eoflow.recv("paid", timeout=3600)
    if eoflow.patched("tax"):  # False for runs that were charged before the change
        how = charge_with_tax(order)
    else:
        how = charge(order)
    return f"{order} charged {how}"

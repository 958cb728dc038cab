"""Another executor for orders.py's workflows, on the same journal: it starts nothing, takes
over the runs it may, and exits once COUNT orders have succeeded.

    python orders_worker.py JOURNAL COUNT
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import orders  # noqa: E402,F401  (its workflows, registered by importing it)

from eoflow import Engine  # noqa: E402


def main() -> None:
    journal, count = sys.argv[1], int(sys.argv[2])
    with Engine(journal=journal, workers=8) as engine:
        print("ready", flush=True)
        deadline = time.monotonic() + 120
        while engine.journal.count_by_status().get("SUCCESS", 0) < count:
            if time.monotonic() > deadline:
                sys.exit(f"timed out: {engine.journal.count_by_status()}")
            time.sleep(0.05)
    print("done", flush=True)


if __name__ == "__main__":
    main()

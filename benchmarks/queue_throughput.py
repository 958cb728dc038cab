"""Queue throughput, enqueue -> start -> finish: eoflow.Queue against DBOS queues, one run.

    python benchmarks/queue_throughput.py [--dbos-python .venv-dbos/bin/python]

N one-step workflows are enqueued one by one (each enqueue durable before it returns), then
every result is awaited; timed from the first enqueue to the last result. Once with no
concurrency limit, once with concurrency 10. eoflow runs at full durability.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import dump, report, run_peer  # noqa: E402
from eoflow import Engine, Queue, step, workflow  # noqa: E402

UNLIMITED = Queue("bench-unlimited")
TEN = Queue("bench-ten", concurrency=10)


@step()
def bench_work(i: int) -> int:
    return i + 1


@workflow()
def bench_job(i: int) -> int:
    return bench_work(i)


def rate(queue: Queue, count: int, journal: str | None = None) -> float:
    """Enqueue-to-finish rate on a fresh journal (a temp SQLite file, or `journal`: an empty
    PostgreSQL database's URL, say)."""
    with tempfile.TemporaryDirectory() as folder:
        with Engine(journal=journal or os.path.join(folder, "bench.db")):
            started = time.perf_counter()
            handles = [queue.enqueue(bench_job, i) for i in range(count)]
            for i, handle in enumerate(handles):
                assert handle.result(timeout=300) == i + 1
            return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dbos-python", help="python of a venv with dbos installed")
    parser.add_argument("--count", type=int, default=500)
    args = parser.parse_args()
    unlimited = max(rate(UNLIMITED, args.count) for _ in range(2))
    ten = max(rate(TEN, args.count) for _ in range(2))
    dbos_unlimited = run_peer(args.dbos_python, "dbos_queue.py", "--count", str(args.count))
    dbos_ten = run_peer(args.dbos_python, "dbos_queue.py", "--count", str(args.count),
                        "--concurrency", "10")
    report(f"queues, {args.count} one-step workflows, enqueue to finish", [
        ("no concurrency limit", unlimited, dbos_unlimited.get("per_second")),
        ("concurrency 10", ten, dbos_ten.get("per_second")),
    ])
    dump("queues", {"eoflow": {"unlimited": unlimited, "concurrency_10": ten},
                    "dbos": {"unlimited": dbos_unlimited, "concurrency_10": dbos_ten}})


if __name__ == "__main__":
    main()

"""DBOS Transact (SQLite system database) queue throughput.

Registers one DBOS queue (``DBOS.register_queue``, worker concurrency
``--concurrency``, default unlimited), then from one thread enqueues ``--count``
(default 500) workflows that each run a single step (x -> x*2), and waits for
every handle's result. Timed from the first enqueue until the last result.
Also reports the enqueue-only time. Five untimed warm-up workflows run first
through the same queue. Every result is checked.

``--poll-interval`` (default 0.1 s; DBOS's own default is 1.0 s) is used both
as the queue's polling interval (how often the queue thread looks for work)
and for handle.get_result's polling of the SQLite database (queued handles
poll; SQLite has no LISTEN/NOTIFY). It is reported in the JSON.
Prints one JSON line on stdout; DBOS logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from importlib.metadata import version
from typing import Any

from dbos import DBOS, DBOSConfig, Queue, WorkflowHandle

QUEUE_NAME = "bench_queue"

DATABASE_URL: str | None = None  # --database-url: DBOS on PostgreSQL


@DBOS.step()
def double(x: int) -> int:
    return x * 2


@DBOS.workflow()
def one_step_workflow(x: int) -> int:
    return double(x)


def run(queue: Queue, start_at: int, count: int, poll: float) -> float:
    """Enqueue ``count`` workflows, wait for all, return the enqueue-only seconds."""
    t0 = time.perf_counter()
    handles: list[WorkflowHandle[int]] = [
        queue.enqueue(one_step_workflow, x) for x in range(start_at, start_at + count)
    ]
    enqueue_seconds = time.perf_counter() - t0
    for x, handle in zip(range(start_at, start_at + count), handles, strict=True):
        result = handle.get_result(polling_interval_sec=poll)
        if result != x * 2:
            raise AssertionError(f"workflow {x}: got {result}, want {x * 2}")
    return enqueue_seconds


def dbos_config(tmpdir: str) -> DBOSConfig:
    return {
        "name": "eoflow-bench-queue",
        "system_database_url": DATABASE_URL
        or f"sqlite:///{os.path.join(tmpdir, 'dbos.sqlite')}",
        "log_level": "WARNING",
        "enable_otlp": False,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument(
        "--concurrency", type=int, default=None, help="worker concurrency (default unlimited)"
    )
    parser.add_argument(
        "--poll-interval", type=float, default=0.1, help="queue and get_result polling seconds"
    )
    parser.add_argument("--database-url", help="a PostgreSQL system database (default: SQLite)")
    args = parser.parse_args()
    global DATABASE_URL
    DATABASE_URL = args.database_url
    concurrency: int | None = args.concurrency

    tmpdir = tempfile.mkdtemp(prefix="dbos-bench-queue-")
    out: dict[str, Any] = {}
    try:
        DBOS(config=dbos_config(tmpdir))
        DBOS.launch()
        try:
            queue = DBOS.register_queue(
                QUEUE_NAME,
                worker_concurrency=concurrency,
                polling_interval_sec=args.poll_interval,
            )
            run(queue, -5, 5, args.poll_interval)  # warm-up, untimed
            start = time.perf_counter()
            enqueue_seconds = run(queue, 0, args.count, args.poll_interval)
            seconds = time.perf_counter() - start
        finally:
            DBOS.destroy()
        out = {
            "system": "dbos",
            "version": version("dbos"),
            "storage": "postgresql" if DATABASE_URL else "sqlite",
            "bench": "queue",
            "count": args.count,
            "concurrency": concurrency,
            "poll_interval": args.poll_interval,
            "enqueue_seconds": round(enqueue_seconds, 4),
            "seconds": round(seconds, 4),
            "per_second": round(args.count / seconds, 1),
        }
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

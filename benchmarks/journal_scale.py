"""Scale of the journal itself: a journal holding millions of finished runs against an empty one.

    python benchmarks/journal_scale.py [--runs 5000000]

Fills a journal with --runs finished one-step runs (60-byte inputs; 1% ERROR; five workflow
names, and one rare name on one run in 100,000; created over the last 30 days), written in
bulk with SQL, as a year of an app would leave them without retention. Then, on it and on an
empty journal, measures: `eoflow status` and `eoflow workflows list` (default, --status ERROR,
--name of a common and of a rare workflow) as a user runs them (a process each, wall time, and
the query alone in this process), the engine's open time, and workflow throughput (start_many
of a step + a transaction per run, full durability). Prints the commit latency of this disk.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import eoflow  # noqa: E402
from benchmarks.common import dump, fsync_ms, machine  # noqa: E402
from eoflow import Engine, Status, step, transaction, workflow  # noqa: E402
from eoflow.journal import views  # noqa: E402
from eoflow.journal.reader import SQLiteReader  # noqa: E402

CHUNK = 250_000
DAY_MS = 86_400_000

FILL = """
WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2)
INSERT INTO eoflow_workflows (workflow_id, name, status, inputs, output, error, created_ms,
                              updated_ms)
SELECT printf('%012x', ?3 + i * ?4) || lower(hex(randomblob(10))),  -- as new_workflow_id
       CASE WHEN i % 100000 = 0 THEN 'rare_flow' ELSE 'flow_' || (i % 5) END,
       CASE WHEN i % 100 = 0 THEN 'ERROR' ELSE 'SUCCESS' END,
       '{"args": ["order-' || printf('%012d', i) || '-abcdefghijklmno"], "kwargs": {}}',
       CASE WHEN i % 100 = 0 THEN NULL ELSE '"ok-' || i || '"' END,
       CASE WHEN i % 100 = 0 THEN '{"$eoflow": "error", "v": {"type": "ValueError", '
            || '"message": "bad order ' || i || '"}}' END,
       ?3 + i * ?4, ?3 + i * ?4 + 5
FROM n;
"""
STEPS = """
INSERT INTO eoflow_steps (workflow_id, step, name, kind, output, error, attempts, started_ms,
                          ended_ms)
SELECT workflow_id, 1, 'parse', 'step', '"parsed"', NULL, 1, created_ms, created_ms + 2
FROM eoflow_workflows WHERE rowid > ?1;
"""


@step()
def scale_parse(i: int) -> dict[str, int]:
    return {"id": i, "total": i * 3}


@transaction()
def scale_record(order: dict[str, int]) -> int:
    eoflow.db().execute("INSERT INTO scale_orders VALUES (?, ?)", (order["id"], order["total"]))
    return order["id"]


@workflow()
def scale_flow(i: int) -> int:
    return scale_record(scale_parse(i))


def fill(path: str, runs: int) -> float:
    with Engine(journal=path):
        pass  # the schema
    started = time.perf_counter()
    conn = apsw.Connection(path)
    conn.execute("PRAGMA synchronous=OFF")
    now = int(time.time() * 1000)
    spread = max(1, 30 * DAY_MS // max(runs, 1))
    for first in range(1, runs + 1, CHUNK):
        last = min(runs, first + CHUNK - 1)
        conn.execute("BEGIN")
        before = conn.execute("SELECT coalesce(max(rowid), 0) FROM eoflow_workflows"
                              ).fetchall()[0][0]
        conn.execute(FILL, (first, last, now - 30 * DAY_MS, spread))
        conn.execute(STEPS, (before,))
        conn.execute("COMMIT")
        print(f"  filled {last:,} runs ({time.perf_counter() - started:.0f}s)", file=sys.stderr,
              flush=True)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


def best(fn: Callable[[], Any], rounds: int = 3) -> float:
    """The best of `rounds` timings of fn(), in seconds (the first warms the page cache)."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def cli(path: str, *args: str) -> Callable[[], None]:
    def run() -> None:
        subprocess.run([sys.executable, "-m", "eoflow.cli.main", *args, "--journal", path,
                        "--json"], check=True, capture_output=True, timeout=600)
    return run


def query(path: str, work: Callable[[SQLiteReader], Any]) -> Callable[[], None]:
    def run() -> None:
        reader = SQLiteReader(path)
        try:
            work(reader)
        finally:
            reader.close()
    return run


def throughput(path: str, count: int) -> float:
    with Engine(journal=path) as engine:
        engine.runtime.txstore.committer.write(lambda c: c.execute(
            "CREATE TABLE IF NOT EXISTS scale_orders (id, total)"))
        rates = []
        for _ in range(3):
            started = time.perf_counter()
            handles = engine.start_many(scale_flow, [(i,) for i in range(count)])
            for i, h in enumerate(handles):
                assert h.result() == i
            rates.append(count / (time.perf_counter() - started))
    return max(rates)


def measure(path: str, count: int) -> dict[str, float]:
    figures = {
        "status (process)": best(cli(path, "status")),
        "status (query)": best(query(path, views.status_report)),
        "list (process)": best(cli(path, "workflows", "list")),
        "list (query)": best(query(path, lambda r: views.list_workflows(r, None, None, 50))),
        "list --status ERROR (query)": best(query(path, lambda r: views.list_workflows(
            r, Status.ERROR, None, 50))),
        "list --name flow_3 (query)": best(query(path, lambda r: views.list_workflows(
            r, None, "flow_3", 50))),
        "list --name rare_flow (query)": best(query(path, lambda r: views.list_workflows(
            r, None, "rare_flow", 50))),
        "engine open + close": best(lambda: Engine(journal=path).close()),
    }
    figures["workflows/s (step + transaction)"] = throughput(path, count)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5_000_000)
    parser.add_argument("--workflows", type=int, default=3000,
                        help="runs per round of the throughput measure")
    parser.add_argument("--folder", help="where to build the journals [default: a temp dir]")
    args = parser.parse_args()
    folder = args.folder or tempfile.mkdtemp(prefix="eoflow-scale-")
    empty, full = os.path.join(folder, "empty.db"), os.path.join(folder, "full.db")
    commit_ms = fsync_ms(folder)
    fill_s = fill(full, args.runs)
    size = os.path.getsize(full)
    with Engine(journal=empty):
        pass
    results = {"empty": measure(empty, args.workflows), "full": measure(full, args.workflows)}
    print(f"\n== Journal scale: {args.runs:,} finished runs ({size / 2**20:,.0f} MiB, filled in "
          f"{fill_s:.0f}s) against an empty journal; one durable commit here takes "
          f"{commit_ms:.2f} ms ({machine()})")
    print(f"{'':36} {'empty':>10} {f'{args.runs:,} runs':>14} {'ratio':>7}")
    for label, small in results["empty"].items():
        large = results["full"][label]
        unit = "" if label.startswith("workflows/s") else " s"
        shown = (f"{small:10.0f} {large:14.0f}" if not unit else
                 f"{small:8.3f}{unit} {large:12.3f}{unit}")
        print(f"{label:36} {shown} {large / small:6.2f}x")
    dump("journal_scale", {"runs": args.runs, "bytes": size, "commit_ms": commit_ms,
                           "fill_seconds": fill_s, **results})


if __name__ == "__main__":
    main()

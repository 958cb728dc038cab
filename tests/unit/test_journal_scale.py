"""What keeps a large journal fast, checked without timing anything: query plans and ids."""

from __future__ import annotations

import time
from collections.abc import Iterator

import apsw

from eoflow import Engine
from eoflow.engine.context import new_workflow_id
from eoflow.journal.sql import Q


def plan(path: str, query: str, args: tuple[object, ...]) -> str:
    conn = apsw.Connection(path)
    try:
        return " | ".join(str(row[3]) for row in conn.execute(
            "EXPLAIN QUERY PLAN " + Q[query], args))
    finally:
        conn.close()


def test_status_throughput_reads_recent_rows_only(journal_path: str) -> None:
    with Engine(journal=journal_path):
        pass
    # Through the status index it would read every SUCCESS run: 1.7 s at 5 million runs.
    assert "eoflow_workflows_updated" in plan(journal_path, "finished_since", (0,))


def test_new_ids_sort_in_the_order_they_were_made() -> None:
    ids = []
    for _ in range(5):
        ids += [new_workflow_id() for _ in range(100)]
        time.sleep(0.002)
    assert len(set(ids)) == len(ids) and all(len(i) == 32 for i in ids)
    int(ids[0], 16)  # hex, as before
    # Ids of different milliseconds sort by time: new runs land at the end of the id indexes.
    stamps = [int(i[:12], 16) for i in ids]
    assert stamps == sorted(stamps)
    assert abs(stamps[-1] - time.time() * 1000) < 5000
    assert sorted(ids[:100])[-1] < sorted(ids[-100:])[0]


def test_retention_reads_a_batch_through_the_time_index(journal_path: str) -> None:
    with Engine(journal=journal_path):
        pass
    page = plan(journal_path, "prune_runs_page", (0, 0, 0, 100))
    # Through the status index, each batch read and sorted every finished run kept.
    assert "eoflow_workflows_updated" in page and "TEMP B-TREE" not in page
    assert "eoflow_workflows_status" not in plan(journal_path, "prune_workflows", ("[]",))


def test_a_runs_own_updates_go_through_its_key_on_a_young_postgres_journal(
        pg_url: str) -> None:
    """The plan a prepared statement caches on a table with no statistics yet: through an
    index of every PENDING run, dead versions included, a run's finish read 3,000 index
    entries at 10,000 runs (1 ms of server CPU per run)."""
    import re

    import psycopg

    with Engine(journal=pg_url):
        pass
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for query in ("finish_workflow", "dequeue", "claim_run"):
            numbers = iter(range(1, 100))

            def dollar(mark: re.Match[str], numbers: Iterator[int] = numbers) -> str:
                return "$" + (mark.group(1) or str(next(numbers)))
            sql = re.sub(r"\?(\d*)", dollar, Q[query])
            plan = " | ".join(row[0] for row in conn.execute(
                "EXPLAIN (GENERIC_PLAN) " + sql))
            assert "eoflow_workflows_pkey" in plan, (query, plan)

"""What keeps a large journal fast, checked without timing anything: query plans and ids."""

from __future__ import annotations

import time

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

"""DBOS Transact (SQLite system database) throughput of a 3-step workflow.

The workflow takes an int ``i`` and runs three steps in order:
step_one(i) -> i+1, step_two(x) -> x*2, step_three(x) -> x-1, returning
(i+1)*2-1. Each step is checkpointed in the SQLite system database.

Modes:
  sequential  call the workflow directly ``--count`` times (default 200)
  concurrent  start ``--count`` workflows (default 500) with DBOS.start_workflow
              from one thread, then wait for every handle's result

Five untimed warm-up workflows run first. Every result is checked.
Prints one JSON line on stdout; DBOS logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from importlib.metadata import version
from typing import Any

from dbos import DBOS, DBOSConfig, WorkflowHandle

DATABASE_URL: str | None = None  # --database-url: DBOS on PostgreSQL


@DBOS.step()
def step_one(i: int) -> int:
    return i + 1


@DBOS.step()
def step_two(x: int) -> int:
    return x * 2


@DBOS.step()
def step_three(x: int) -> int:
    return x - 1


@DBOS.workflow()
def three_step_workflow(i: int) -> int:
    return step_three(step_two(step_one(i)))


def expected(i: int) -> int:
    return (i + 1) * 2 - 1


def run_sequential(count: int) -> None:
    for i in range(count):
        result = three_step_workflow(i)
        if result != expected(i):
            raise AssertionError(f"workflow {i}: got {result}, want {expected(i)}")


def run_concurrent(count: int) -> None:
    handles: list[WorkflowHandle[int]] = [
        DBOS.start_workflow(three_step_workflow, i) for i in range(count)
    ]
    for i, handle in enumerate(handles):
        result = handle.get_result()
        if result != expected(i):
            raise AssertionError(f"workflow {i}: got {result}, want {expected(i)}")


def dbos_config(tmpdir: str) -> DBOSConfig:
    return {
        "name": "eoflow-bench-workflows",
        "system_database_url": DATABASE_URL
        or f"sqlite:///{os.path.join(tmpdir, 'dbos.sqlite')}",
        "log_level": "WARNING",
        "enable_otlp": False,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=["sequential", "concurrent"], default="sequential")
    parser.add_argument("--count", type=int, default=None, help="default 200 / 500")
    parser.add_argument("--database-url", help="a PostgreSQL system database (default: SQLite)")
    args = parser.parse_args()
    global DATABASE_URL
    DATABASE_URL = args.database_url
    count: int = args.count or (200 if args.mode == "sequential" else 500)

    tmpdir = tempfile.mkdtemp(prefix="dbos-bench-wf-")
    out: dict[str, Any] = {}
    try:
        DBOS(config=dbos_config(tmpdir))
        DBOS.launch()
        try:
            # Warm-up: untimed, on distinct inputs so the checks still apply.
            for i in range(5):
                assert three_step_workflow(i) == expected(i)
            runner = run_sequential if args.mode == "sequential" else run_concurrent
            start = time.perf_counter()
            runner(count)
            seconds = time.perf_counter() - start
        finally:
            DBOS.destroy(destroy_registry=False)
        out = {
            "system": "dbos",
            "version": version("dbos"),
            "storage": "postgresql" if DATABASE_URL else "sqlite",
            "bench": "workflows",
            "mode": args.mode,
            "count": count,
            "seconds": round(seconds, 4),
            "per_second": round(count / seconds, 1),
        }
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    sys.stdout.flush()
    print(json.dumps(out))


if __name__ == "__main__":
    main()

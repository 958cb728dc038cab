"""Workflow throughput: the same 3-step workflow in eoflow and DBOS Transact, one run.

    python benchmarks/workflow_throughput.py [--dbos-python .venv-dbos/bin/python]

eoflow runs at full durability (WAL, synchronous=FULL: every step durable before the next).
Sequential: N direct calls in a loop. Concurrent: 500 started at once, then every result awaited;
eoflow is measured both with start_many (one durable transaction for the 500 starts) and with a
loop of start() (each start durable before it returns, like DBOS's start_workflow).
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
from eoflow import Engine, step, workflow  # noqa: E402


@step()
def step_one(i: int) -> int:
    return i + 1


@step()
def step_two(x: int) -> int:
    return x * 2


@step()
def step_three(x: int) -> int:
    return x - 1


@workflow()
def three_steps(i: int) -> int:
    return step_three(step_two(step_one(i)))


def expected(i: int) -> int:
    return (i + 1) * 2 - 1


def sequential(engine: Engine, count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        assert three_steps(i) == expected(i)
    return count / (time.perf_counter() - started)


def concurrent(engine: Engine, count: int, many: bool) -> float:
    started = time.perf_counter()
    if many:
        handles = engine.start_many(three_steps, [(i,) for i in range(count)])
    else:
        handles = [engine.start(three_steps, i) for i in range(count)]
    for i, handle in enumerate(handles):
        assert handle.result(timeout=120) == expected(i)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dbos-python", help="python of a venv with dbos installed")
    parser.add_argument("--sequential", type=int, default=1000)
    parser.add_argument("--concurrent", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="best of N rounds (eoflow)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        with Engine(journal=os.path.join(folder, "bench.db"), durability="full") as engine:
            for i in range(20):  # warm up
                three_steps(i)
            seq = max(sequential(engine, args.sequential) for _ in range(args.rounds))
            many = max(concurrent(engine, args.concurrent, True) for _ in range(args.rounds))
            loop = max(concurrent(engine, args.concurrent, False) for _ in range(args.rounds))
    dbos_seq = run_peer(args.dbos_python, "dbos_workflows.py", "--mode", "sequential")
    dbos_con = run_peer(args.dbos_python, "dbos_workflows.py", "--mode", "concurrent",
                        "--count", str(args.concurrent))
    report("3-step workflows, full durability", [
        (f"sequential ({args.sequential} calls)", seq, dbos_seq.get("per_second")),
        (f"{args.concurrent} at once, start_many", many, dbos_con.get("per_second")),
        (f"{args.concurrent} at once, start() loop", loop, dbos_con.get("per_second")),
    ])
    dump("workflows", {"eoflow": {"sequential": seq, "concurrent_start_many": many,
                                  "concurrent_start_loop": loop},
                       "dbos": {"sequential": dbos_seq, "concurrent": dbos_con}})


if __name__ == "__main__":
    main()

"""`eoflow verify` speed: runs replayed per second on a journal of --runs runs.

    python benchmarks/verify_speed.py [--runs 100000]

The journal is filled with runs of a 3-step workflow (a step, a transaction, a step) through
start_many, at full durability; then every run is verified against the same code, in this
process, as `eoflow verify --status SUCCESS` does. DBOS has no offline replay to compare with:
no ratio is printed. The commit latency of the disk is printed beside the figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import dump, fsync_ms, machine  # noqa: E402
from eoflow import Engine, step, transaction, workflow  # noqa: E402
from eoflow.engine import verify  # noqa: E402
from eoflow.journal.opening import open_reader  # noqa: E402


@step()
def vs_parse(i: int) -> int:
    return i + 1


@transaction()
def vs_record(x: int) -> int:
    return x * 2


@step()
def vs_reply(x: int) -> str:
    return str(x)


@workflow()
def vs_order(i: int) -> str:
    return vs_reply(vs_record(vs_parse(i)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        commit = fsync_ms(folder)
        journal = os.path.join(folder, "verify.db")
        started = time.perf_counter()
        with Engine(journal=journal) as engine:
            for first in range(0, args.runs, 2000):
                handles = engine.start_many(vs_order, [(i,) for i in range(
                    first, min(first + 2000, args.runs))])
                for handle in handles:
                    handle.result(timeout=300)
        filled = time.perf_counter() - started
        reader = open_reader(journal)
        try:
            report = verify.verify(reader, verify.candidates(reader, ("SUCCESS",), None, None))
        finally:
            reader.close()
    data = report.as_dict()
    print(f"\n== eoflow verify ({machine()}); one commit takes {commit:.2f} ms")
    print(f"journal of {args.runs} runs of a 3-step workflow, filled in {filled:.1f} s")
    print(f"verified {report.checked} runs in {report.seconds:.2f} s: "
          f"{data['runs_per_second']:,.0f} runs/s, {len(data['divergences'])} divergences")
    print("DBOS: no offline replay to compare with")
    dump("verify", {**data, "runs": args.runs, "commit_ms": commit, "divergences": None})


if __name__ == "__main__":
    main()

"""Run every benchmark in one go: `make bench` (builds the DBOS venv first).

    python benchmarks/run_all.py --dbos-python .venv-dbos/bin/python
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dbos-python", required=True)
    args = parser.parse_args()
    status = 0
    runs = [["workflow_throughput.py"], ["queue_throughput.py"], ["kafka_throughput.py"],
            ["kafka_throughput.py", "--partitions", "12"], ["fairness.py"],
            ["postgres_throughput.py"], ["many_engines.py"], ["tracing_overhead.py"]]
    plain = [["verify_speed.py"]]  # no DBOS peer: nothing to compare with
    for script, *extra in runs:
        done = subprocess.run([sys.executable, str(HERE / script), "--dbos-python",
                               args.dbos_python, *extra])
        status = status or done.returncode
    for script, *extra in plain:
        done = subprocess.run([sys.executable, str(HERE / script), *extra])
        status = status or done.returncode
    sys.exit(status)


if __name__ == "__main__":
    main()

"""The benchmark scripts still run (tiny counts, no DBOS): the README's figures come from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(script: str, *args: str) -> str:
    """Run a benchmark script; its stdout (it must exit 0)."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_workflow_benchmark_runs() -> None:
    out = run("workflow_throughput.py", "--sequential", "50", "--concurrent", "50", "--rounds",
              "1")
    for row in ("sequential (50 calls)", "start_many", "start() loop"):
        assert row in out


def test_queue_benchmark_runs() -> None:
    out = run("queue_throughput.py", "--count", "50")
    assert "no concurrency limit" in out and "concurrency 10" in out

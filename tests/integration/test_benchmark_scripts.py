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


def test_soak_benchmark_runs_and_applies_every_message_once() -> None:
    out = run("soak.py", "--minutes", "0.25", "--every", "5", "--retention", "3s",
              "--backlog", "2000")
    assert "exactly once: True" in out and "prune passes" in out


def test_journal_scale_benchmark_runs() -> None:
    out = run("journal_scale.py", "--runs", "20000", "--workflows", "100")
    for row in ("status (process)", "list --name rare_flow", "engine open", "workflows/s"):
        assert row in out


def test_many_engines_benchmark_runs() -> None:
    out = run("many_engines.py", "--messages", "300", "--starts", "200", "--held", "200",
              "--processes", "2", "--samples", "1", "--lease", "2s")
    for row in ("Kafka workflow path, 2 processes", "direct starts (start_many), 2 processes",
                "SQLite file, Kafka workflow path, 2 processes", "holder killed",
                "holder paused", "a message reaches a waiting run"):
        assert row in out


def test_verify_benchmark_runs() -> None:
    out = run("verify_speed.py", "--runs", "300")
    assert "verified 300 runs" in out and "0 divergences" in out


def test_tracing_overhead_benchmark_runs() -> None:
    out = run("tracing_overhead.py", "--runs", "50", "--rounds", "1")
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["off"][5] == "0" and lines["no-op"][5] == "0"
    assert lines["in-memory"][5] == "350"  # 70 runs (20 of warm-up), 5 spans each

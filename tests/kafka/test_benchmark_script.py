"""The Kafka benchmark still runs (tiny count, its own embedded broker, no DBOS)."""

from __future__ import annotations

from tests.integration.test_benchmark_scripts import run


def test_kafka_benchmark_runs() -> None:
    out = run("kafka_throughput.py", "--count", "300", "--partitions", "2")
    for row in ("transaction path", "ordered per partition", "ordered per key", "unordered",
                "CPU µs/msg", "one durable commit here takes", "ordered per partition, one CPU",
                "unordered, one CPU"):
        assert row in out


def test_fairness_benchmark_runs() -> None:
    out = run("fairness.py", "--slow", "60", "--workflows", "60")
    assert "writer budget with budget" in out and "writer budget without" in out
    assert "one commit:" in out

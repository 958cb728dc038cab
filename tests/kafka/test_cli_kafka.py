"""`eoflow broker`, `eoflow produce` and a consumer routed through a queue, for real."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from kafka import KafkaConsumer

from eoflow import Engine, KafkaMessage, Queue, kafka_consume, step, workflow
from eoflow.devbroker import free_port

from .conftest import new_topic, produce_ids, wait_until


def eoflow_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "eoflow.cli.main", *args], input=stdin,
                          capture_output=True, text=True, timeout=120)


def read_all(broker: str, topic: str, count: int) -> list[bytes]:
    consumer = KafkaConsumer(topic, bootstrap_servers=[broker], group_id=f"read-{topic}",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             session_timeout_ms=6000, heartbeat_interval_ms=1000)
    values: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while len(values) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
    finally:
        consumer.close()
    return values


def test_eoflow_broker_and_produce() -> None:
    port = free_port()
    with subprocess.Popen([sys.executable, "-m", "eoflow.cli.main", "broker", "--port",
                           str(port)], stdout=subprocess.PIPE, text=True) as broker:
        try:
            assert broker.stdout is not None
            line = broker.stdout.readline()
            address = f"127.0.0.1:{port}"
            assert f"--brokers {address}" in line
            done = eoflow_cli("produce", "cli-topic", "--brokers", address, "--count", "5")
            assert done.returncode == 0 and "sent 5 message(s) to cli-topic" in done.stdout
            done = eoflow_cli("produce", "cli-topic", "--brokers", address,
                              stdin="first line\nsecond line\n")
            assert done.returncode == 0 and "sent 2 message(s)" in done.stdout
            done = eoflow_cli("produce", "cli-topic", "--brokers", address, "--count", "2",
                              "--start", "10", "--key", "customer-7")
            assert done.returncode == 0 and "sent 2 message(s)" in done.stdout
            values = read_all(address, "cli-topic", 9)
            assert sorted(json.loads(v)["id"] for v in values if v.startswith(b"{")) == [
                0, 1, 2, 3, 4, 10, 11]
            assert {b"first line", b"second line"} <= set(values)
        finally:
            broker.send_signal(signal.SIGINT)
            broker.wait(timeout=30)


def _start_cli_broker(port: int) -> subprocess.Popen[str]:
    broker = subprocess.Popen([sys.executable, "-m", "eoflow.cli.main", "broker", "--port",
                               str(port)], stdout=subprocess.PIPE, text=True)
    assert broker.stdout is not None
    assert "--brokers" in broker.stdout.readline()
    return broker


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "SIGKILL"])
def test_eoflow_broker_leaves_no_broker_behind(how: str) -> None:
    port = free_port()
    broker = _start_cli_broker(port)
    try:
        assert _listening(port)
        broker.send_signal(getattr(signal, how))
        broker.wait(timeout=30)
        wait_until(lambda: not _listening(port), 10, f"the broker to stop ({how})")
    finally:
        if broker.poll() is None:
            broker.kill()
        broker.wait()
        assert broker.stdout is not None
        broker.stdout.close()


def test_produce_to_an_unreachable_broker_is_one_clear_line() -> None:
    port = free_port()
    done = eoflow_cli("produce", "t", "--brokers", f"127.0.0.1:{port}", "--count", "1")
    assert done.returncode == 1
    assert f"127.0.0.1:{port}" in done.stderr and "no broker reachable" in done.stderr
    assert done.stderr.strip().count("\n") == 0


LIMITED = Queue("kafka-limited", concurrency=2)
RUNNING = {"now": 0, "max": 0}
RUNNING_LOCK = threading.Lock()


def test_a_consumer_routed_through_a_queue_is_bounded(broker: str, journal_path: str) -> None:
    topic = new_topic(broker)

    @step()
    def kq_work(i: int) -> int:
        with RUNNING_LOCK:
            RUNNING["now"] += 1
            RUNNING["max"] = max(RUNNING["max"], RUNNING["now"])
        time.sleep(0.01)
        with RUNNING_LOCK:
            RUNNING["now"] -= 1
        return i

    @kafka_consume(topic, group_id=f"g-{topic}", queue="kafka-limited")
    @workflow()
    def kq_flow(topic: str, partition: int, message: KafkaMessage) -> int:
        return kq_work(json.loads(message.value)["id"])

    produce_ids(broker, topic, range(40))
    with Engine(journal=journal_path) as engine:
        engine.consume(kq_flow, brokers=broker)
        wait_until(lambda: engine.journal.count_by_status().get("SUCCESS") == 40, 60, "40")
        runs = engine.journal.list_workflows(limit=100)
        assert {r.queue for r in runs} == {"kafka-limited"}
    assert 1 <= RUNNING["max"] <= 2

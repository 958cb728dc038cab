"""Kafka tier fixtures: a real Kafka-protocol broker per session, fresh topics per test.

Set EOFLOW_TEST_KAFKA=host:port to run this tier against an existing cluster (Apache Kafka)
instead of the embedded in-memory broker. Proxy-based outage tests start their own broker.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from eoflow.devbroker import LocalBroker, external_brokers
from eoflow.engine.kafka.source import Producer, create_topic

pytestmark = pytest.mark.kafka


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/kafka/" in str(item.fspath):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    address = external_brokers()
    if address:
        yield address
        return
    with LocalBroker() as local:
        yield local.address


def new_topic(broker: str, partitions: int = 3) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    create_topic((broker,), name, partitions)
    return name


@pytest.fixture
def topic(broker: str) -> str:
    return new_topic(broker)


def produce(broker: str, topic: str, values: list[bytes], partition: int | None = None) -> None:
    producer = Producer((broker,))
    try:
        for value in values:
            producer.send(topic, value, partition=partition)
        producer.flush()
    finally:
        producer.close()


def produce_ids(broker: str, topic: str, ids: range | list[int]) -> None:
    produce(broker, topic, [json.dumps({"id": i}).encode() for i in ids])


def wait_until(condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")

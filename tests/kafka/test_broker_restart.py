"""The broker itself killed (SIGKILL) and started again mid-run, on the same port and with its
data kept in a local S3 store: the consumer warns while it is down, resumes on its own, and
every message, before and after the restart, is applied exactly once on both paths."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator

import pytest
from kafka import KafkaConsumer, TopicPartition

import eoflow
from eoflow import Engine, KafkaMessage, kafka_consume, transaction, workflow
from eoflow.devbroker import LocalBroker, external_brokers, stable_port

from .conftest import new_topic, produce_ids, wait_until
from .s3store import running_s3
from .test_consume import create_ledger, ledger_counts

BEFORE = 1500  # produced before the consumer starts; the broker dies while they are consumed
AFTER = 200  # produced once the broker is back, to the same consumer
OUTAGE = 5.0  # seconds the broker stays down once eoflow has warned about it
# Small batches, so the broker dies mid-stream. (A commit in flight when it dies fails, and eoflow
# warns, after eoflow's default request_timeout_ms of 10 s.)
CONSUMER = {"max_poll_records": 20}


@pytest.fixture
def restartable() -> Iterator[LocalBroker]:
    """An embedded broker that keeps topics, records and committed offsets in S3."""
    if external_brokers():
        pytest.skip("broker restart tests kill and restart their own embedded broker; "
                    "EOFLOW_TEST_KAFKA points at an external cluster")  # pragma: no cover
    with running_s3() as store, \
            LocalBroker(stable_port(), storage=store.url, env=store.env) as broker:
        yield broker


def committed(broker: str, group: str, topic: str, partitions: int = 3) -> int:
    """The group's committed offsets on the broker, summed: how many messages it acknowledged."""
    consumer = KafkaConsumer(bootstrap_servers=[broker], group_id=group,
                             enable_auto_commit=False)
    try:
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in range(partitions))
    finally:
        consumer.close()


def kill_and_restart(broker: LocalBroker, consumed: Callable[[], int],
                     caplog: pytest.LogCaptureFixture) -> None:
    """Once some messages (not all) are consumed, kill the broker; check that the consumer warns,
    naming the broker, and stops consuming; then start the broker again on the same port with
    the same store."""
    wait_until(lambda: consumed() > 100, 60, "the first messages")
    broker.stop()  # SIGKILL, like a crash
    wait_until(lambda: any(broker.address in r.getMessage() for r in caplog.records
                           if r.name.startswith("eoflow") and r.levelno >= logging.WARNING),
               30, "a warning from eoflow naming the broker")
    time.sleep(OUTAGE / 2)  # what was fetched before the kill is handled by now
    stalled = consumed()
    time.sleep(OUTAGE / 2)
    assert consumed() == stalled < BEFORE, "consuming went on with the broker down"
    broker.start()


def test_transactions_survive_a_broker_restart(
        restartable: LocalBroker, journal_path: str, caplog: pytest.LogCaptureFixture) -> None:
    broker = restartable
    topic = new_topic(broker.address)

    @kafka_consume(topic, group_id=f"g-{topic}", **CONSUMER)
    @transaction()
    def r_apply(topic: str, partition: int, message: KafkaMessage) -> None:
        time.sleep(0.004)
        eoflow.db().execute("INSERT INTO ledger VALUES (?, ?, ?)",
                            (json.loads(message.value)["id"], partition, message.offset))

    produce_ids(broker.address, topic, range(BEFORE))
    with Engine(journal=journal_path) as engine, caplog.at_level(logging.WARNING):
        create_ledger(engine)
        engine.consume(r_apply, brokers=broker.address)
        kill_and_restart(broker, lambda: len(ledger_counts(engine)), caplog)
        wait_until(lambda: len(ledger_counts(engine)) == BEFORE, 60, f"all {BEFORE} messages")
        produce_ids(broker.address, topic, range(BEFORE, BEFORE + AFTER))
        wait_until(lambda: len(ledger_counts(engine)) == BEFORE + AFTER, 60,
                   f"the {AFTER} messages produced after the restart")
        wait_until(lambda: committed(broker.address, f"g-{topic}", topic) == BEFORE + AFTER, 30,
                   "every offset committed to the restarted broker")
        counts = ledger_counts(engine)
    assert set(counts) == set(range(BEFORE + AFTER))
    assert set(counts.values()) == {1}


def test_workflows_survive_a_broker_restart(
        restartable: LocalBroker, journal_path: str, caplog: pytest.LogCaptureFixture) -> None:
    broker = restartable
    topic = new_topic(broker.address)

    @transaction()
    def r_record(i: int, partition: int, offset: int) -> None:
        eoflow.db().execute("INSERT INTO ledger VALUES (?, ?, ?)", (i, partition, offset))

    # Recording a start is quicker than applying a transaction: smaller batches still, so the
    # broker dies with most messages not yet fetched.
    @kafka_consume(topic, group_id=f"g-{topic}", **dict(CONSUMER, max_poll_records=5))
    @workflow()
    def r_flow(topic: str, partition: int, message: KafkaMessage) -> int:
        i = int(json.loads(message.value)["id"])
        r_record(i, partition, message.offset)
        return i

    def runs() -> int:
        return sum(engine.journal.count_by_status().values())

    produce_ids(broker.address, topic, range(BEFORE))
    with Engine(journal=journal_path) as engine, caplog.at_level(logging.WARNING):
        create_ledger(engine)
        engine.consume(r_flow, brokers=broker.address)
        kill_and_restart(broker, runs, caplog)
        wait_until(lambda: len(ledger_counts(engine)) == BEFORE, 60, f"all {BEFORE} messages")
        produce_ids(broker.address, topic, range(BEFORE, BEFORE + AFTER))
        wait_until(lambda: len(ledger_counts(engine)) == BEFORE + AFTER, 60,
                   f"the {AFTER} messages produced after the restart")
        wait_until(lambda: engine.journal.count_by_status().get("SUCCESS") == BEFORE + AFTER,
                   60, "every run to finish")
        wait_until(lambda: committed(broker.address, f"g-{topic}", topic) == BEFORE + AFTER, 30,
                   "every offset committed to the restarted broker")
        counts = ledger_counts(engine)
        statuses = engine.journal.count_by_status()
    assert set(counts) == set(range(BEFORE + AFTER))
    assert set(counts.values()) == {1}
    assert statuses == {"SUCCESS": BEFORE + AFTER}

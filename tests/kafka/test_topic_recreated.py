"""A broker that lost its data (an in-memory broker restarted): the topic comes back empty
under a new id, its offsets start from 0 again, and the new messages would carry the keys of
messages already applied. eoflow refuses to guess: the consumer stops with an error naming the
group and topic, until `eoflow kafka restart-topic` starts a new incarnation."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

import eoflow
from eoflow import Engine, KafkaMessage, kafka_consume, transaction
from eoflow.devbroker import LocalBroker, external_brokers, stable_port
from eoflow.engine.kafka.source import create_topic

from .conftest import new_topic, produce_ids, wait_until
from .test_consume import create_ledger, ledger_counts


def test_a_broker_that_lost_its_topic_is_refused_then_restarted(
        journal_path: str, caplog: pytest.LogCaptureFixture) -> None:
    if external_brokers():
        pytest.skip("restarts its own in-memory broker")  # pragma: no cover
    local = LocalBroker(stable_port())
    local.start()
    try:
        topic = new_topic(local.address, partitions=1)

        @kafka_consume(topic, group_id="tr-group")
        @transaction(name="tr_apply")
        def apply(topic: str, partition: int, message: KafkaMessage) -> None:
            eoflow.db().execute("INSERT INTO ledger(id) VALUES (?)",
                                (json.loads(message.value or b"{}")["id"],))

        def applied(engine: Engine) -> list[int]:
            return sorted(ledger_counts(engine))

        produce_ids(local.address, topic, range(5))
        with Engine(journal=journal_path, brokers=local.address) as engine:
            create_ledger(engine)
            engine.consume(apply)
            wait_until(lambda: len(applied(engine)) == 5, 60, "the first 5")
        local.stop()
        local.start()  # it kept everything in memory: the topic is gone
        create_topic((local.address,), topic, 1)
        produce_ids(local.address, topic, range(100, 103))  # at offsets 0, 1, 2 again
        with Engine(journal=journal_path, brokers=local.address) as engine:
            loops = engine.consume(apply)
            wait_until(lambda: not loops[0]._thread.is_alive(), 60, "the consumer to refuse")
            assert applied(engine) == [0, 1, 2, 3, 4]  # nothing skipped as "already applied"
        assert any("was recreated" in r.getMessage() and "restart-topic" in r.getMessage()
                   for r in caplog.records if r.levelno == logging.ERROR)
        done = subprocess.run([sys.executable, "-m", "eoflow.cli.main", "kafka",
                               "restart-topic", topic, "--group", "tr-group", "--journal",
                               journal_path], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "incarnation 1" in done.stdout, done.stderr
        with Engine(journal=journal_path, brokers=local.address) as engine:
            engine.consume(apply)
            wait_until(lambda: len(applied(engine)) == 8, 60, "the new 3")
            assert applied(engine) == [0, 1, 2, 3, 4, 100, 101, 102]
    finally:
        local.stop()

"""Broker outages, journal failures and rebalances: warnings, then nothing lost or doubled."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator

import pytest

import eoflow
from eoflow import Engine, KafkaMessage, kafka_consume, transaction, workflow
from eoflow.devbroker import LocalBroker, external_brokers, free_port

from .conftest import new_topic, produce_ids, wait_until
from .proxy import Proxy
from .test_consume import create_ledger, ledger_counts


@pytest.fixture
def proxied() -> Iterator[tuple[str, Proxy]]:
    """A broker reachable only through a proxy that the test can cut."""
    if external_brokers():
        pytest.skip("proxy outage tests need the embedded broker")  # pragma: no cover
    proxy_port = free_port()
    with LocalBroker(advertised_port=proxy_port) as local:
        proxy = Proxy(proxy_port, local.port)
        proxy.start()
        try:
            yield f"127.0.0.1:{proxy_port}", proxy
        finally:
            proxy.stop()


def test_broker_outage_mid_run_loses_and_doubles_nothing(
        proxied: tuple[str, Proxy], journal_path: str,
        caplog: pytest.LogCaptureFixture) -> None:
    address, proxy = proxied
    topic = new_topic(address)

    @kafka_consume(topic, group_id=f"g-{topic}", max_poll_records=20)
    @transaction()
    def f_slow(topic: str, partition: int, message: KafkaMessage) -> None:
        time.sleep(0.004)
        eoflow.db().execute("INSERT INTO ledger VALUES (?, ?, ?)",
                            (json.loads(message.value)["id"], partition, message.offset))

    produce_ids(address, topic, range(1500))
    with Engine(journal=journal_path) as engine, caplog.at_level(logging.WARNING):
        create_ledger(engine)
        engine.consume(f_slow, brokers=address)
        wait_until(lambda: len(ledger_counts(engine)) > 100, 60, "first messages")
        proxy.stop()
        time.sleep(6)
        in_outage = len(ledger_counts(engine))
        proxy.start()
        wait_until(lambda: len(ledger_counts(engine)) == 1500, 120, "all 1500 messages")
        assert set(ledger_counts(engine).values()) == {1}
    assert in_outage < 1500
    assert address in caplog.text  # the warnings name the broker address


def test_broker_unreachable_at_start(proxied: tuple[str, Proxy], journal_path: str,
                                     caplog: pytest.LogCaptureFixture) -> None:
    address, proxy = proxied
    topic = new_topic(address)

    @kafka_consume(topic, group_id=f"g-{topic}")
    @transaction()
    def f_late(topic: str, partition: int, message: KafkaMessage) -> None:
        eoflow.db().execute("INSERT INTO ledger VALUES (?, ?, ?)",
                            (json.loads(message.value)["id"], partition, message.offset))

    produce_ids(address, topic, range(50))
    proxy.stop()
    with Engine(journal=journal_path) as engine, caplog.at_level(logging.WARNING):
        create_ledger(engine)
        engine.consume(f_late, brokers=address)
        wait_until(lambda: "no broker reachable" in caplog.text, 30, "a warning")
        assert address in caplog.text and "retrying in" in caplog.text
        proxy.start()
        wait_until(lambda: len(ledger_counts(engine)) == 50, 90, "50 messages")
        assert set(ledger_counts(engine).values()) == {1}


def test_journal_failure_rewinds_and_retries(broker: str, journal_path: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    topic = new_topic(broker)

    @kafka_consume(topic, group_id=f"g-{topic}")
    @workflow()
    def f_record(topic: str, partition: int, message: KafkaMessage) -> int:
        return int(json.loads(message.value)["id"])

    with Engine(journal=journal_path) as engine, caplog.at_level(logging.WARNING):
        loops = engine.consume(f_record, brokers=broker)
        assert loops[0].connected.wait(30)
        produce_ids(broker, topic, range(50))
        wait_until(lambda: engine.journal.count_by_status().get("SUCCESS") == 50, 60, "50")
        pages = engine.journal.committer.read(
            lambda c: c.execute("PRAGMA page_count").fetchall()[0][0])
        engine.journal.committer.read(  # from now on every insert fails: SQLITE_FULL
            lambda c: c.execute(f"PRAGMA max_page_count={pages}").fetchall())
        produce_ids(broker, topic, range(50, 2050))
        wait_until(lambda: "could not record a batch" in caplog.text, 30, "a warning")
        assert "disk is full" in caplog.text
        engine.journal.committer.read(
            lambda c: c.execute("PRAGMA max_page_count=1073741823").fetchall())
        wait_until(lambda: engine.journal.count_by_status().get("SUCCESS") == 2050, 90,
                   "2050 runs")
        assert engine.journal.count_by_status() == {"SUCCESS": 2050}


# About one run in ten on the embedded broker (Tansu 0.6), the group never completes the
# rebalance that hands app A its partitions back, and topic a stops moving; it happens with the
# code before this session's changes too (1 of 9 runs there), and never against Apache Kafka
# as far as we know. Rerun it (a fresh group and topics each time) rather than hide the check.
@pytest.mark.flaky(reruns=2)
def test_rebalance_between_two_apps_on_different_topics(broker: str, tmp_path) -> None:
    """Two apps with their own journals share a group id but consume different topics: the
    second one joining mid-stream rebalances the group, revoking and re-assigning the first
    app's partitions while messages flow. The first app still applies each message once, and
    the second gets its topic's partitions (the leader, the first app, has no metadata for that
    topic: eoflow's assignor looks it up) and applies its messages once too."""
    topic_a, topic_b = new_topic(broker), new_topic(broker)
    group = f"shared-{topic_a}"

    def handler(table: str):  # type: ignore[no-untyped-def]
        def apply(topic: str, partition: int, message: KafkaMessage) -> None:
            eoflow.db().execute(f"INSERT INTO {table} VALUES (?, ?, ?)",
                                (json.loads(message.value)["id"], partition, message.offset))
        apply.__qualname__ = f"f_rebalance_{table}"
        return apply

    apply_a = kafka_consume(topic_a, group_id=group)(transaction()(handler("ledger_a")))
    apply_b = kafka_consume(topic_b, group_id=group)(transaction()(handler("ledger_b")))
    stop = threading.Event()
    produced: list[int] = []

    def keep_producing() -> None:
        i = 0
        while not stop.is_set():
            produce_ids(broker, topic_a, range(i, i + 20))
            i += 20
            time.sleep(0.05)
        produced.append(i)

    with Engine(journal=str(tmp_path / "a.db")) as app_a, \
            Engine(journal=str(tmp_path / "b.db")) as app_b:
        create_ledger(app_a, "ledger_a")
        create_ledger(app_b, "ledger_b")
        loop_a = app_a.consume(apply_a, brokers=broker)[0]
        assert loop_a.connected.wait(30)
        producer = threading.Thread(target=keep_producing)
        producer.start()
        try:
            time.sleep(1)
            loop_b = app_b.consume(apply_b, brokers=broker)[0]  # joins: the group rebalances
            wait_until(lambda: loop_a.revocations > 0, 30, "a rebalance")
            wait_until(lambda: len(loop_b.assigned) == 3, 30, "topic b's partitions for app b")
            produce_ids(broker, topic_b, range(300))
            time.sleep(2)
        finally:
            stop.set()
            producer.join()
        total = produced[0]
        wait_until(lambda: len(ledger_counts(app_a, "ledger_a")) == total, 60, "topic a")
        assert set(ledger_counts(app_a, "ledger_a").values()) == {1}
        wait_until(lambda: len(ledger_counts(app_b, "ledger_b")) == 300, 60, "topic b")
        assert set(ledger_counts(app_b, "ledger_b").values()) == {1}
        assert {t for t, _ in loop_a.assigned} == {topic_a}
        assert {t for t, _ in loop_b.assigned} == {topic_b}

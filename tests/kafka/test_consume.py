"""Exactly-once consumption against a real broker: both paths, duplicates, poison, order."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

import eoflow
from eoflow import Engine, KafkaMessage, kafka_consume, step, transaction, workflow
from eoflow.engine.kafka.source import Producer
from eoflow.errors import DefinitionError
from eoflow.journal import codec
from eoflow.journal.records import Status
from tests.portable import app_sql

from .conftest import new_topic, produce, produce_ids, wait_until


def ledger_counts(engine: Engine, table: str = "ledger") -> dict[int, int]:
    rows = engine.runtime.txstore.committer.read(
        lambda c: c.execute(f"SELECT id, count(*) FROM {table} GROUP BY id").fetchall())
    return dict(rows)


def create_ledger(engine: Engine, table: str = "ledger") -> None:
    engine.runtime.txstore.committer.write(
        lambda c: c.execute(f"CREATE TABLE IF NOT EXISTS {table}(id INTEGER, partition INTEGER,"
                            ' "offset" INTEGER)'))


def reset_group(broker: str, group: str, topic: str, partitions: int = 3) -> None:
    """Rewind a group's committed offsets to 0: every message is delivered again."""
    consumer = KafkaConsumer(bootstrap_servers=[broker], group_id=group,
                             enable_auto_commit=False)
    try:
        consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(0, None, -1)
                         for p in range(partitions)})
    finally:
        consumer.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_workflow_and_transaction_paths_apply_each_message_once(
        broker: str, journal_path: str) -> None:
    wf_topic, tx_topic = new_topic(broker), new_topic(broker)

    @step()
    def k_double(i: int) -> int:
        return i * 2

    @kafka_consume(wf_topic, group_id=f"g-{wf_topic}")
    @workflow()
    def k_flow(topic: str, partition: int, message: KafkaMessage) -> int:
        eoflow.logger.info("Message received: %s", message.value)
        return k_double(json.loads(message.value)["id"])

    @kafka_consume(tx_topic, group_id=f"g-{tx_topic}")
    @transaction()
    def k_apply(topic: str, partition: int, message: KafkaMessage) -> None:
        app_sql("INSERT INTO ledger VALUES (?, ?, ?)",
                (json.loads(message.value)["id"], partition, message.offset))

    produce_ids(broker, wf_topic, range(300))
    produce_ids(broker, tx_topic, range(300))
    with Engine(journal=journal_path) as engine:
        create_ledger(engine)
        engine.consume(k_flow, k_apply, brokers=broker)
        wait_until(lambda: engine.journal.count_by_status().get("SUCCESS") == 300, 60,
                   "300 workflows")
        wait_until(lambda: len(ledger_counts(engine)) == 300, 60, "300 ledger rows")
        assert set(ledger_counts(engine).values()) == {1}
        runs = engine.journal.list_workflows(limit=1000)
        assert sorted(codec.decode(r.output) for r in runs) == [i * 2 for i in range(300)]
        record = engine.journal.get_workflow(f"kafka:{wf_topic}:0:0:g-{wf_topic}")
        assert record is not None and record.status is Status.SUCCESS
        offsets = {(t, p): o for g, t, p, o, n, _ in engine.journal.kafka_offsets()}
        assert sum(1 for (t, _p) in offsets if t == tx_topic) == 3


def test_redelivered_offsets_change_nothing(broker: str, journal_path: str) -> None:
    topic = new_topic(broker)
    group = f"g-{topic}"

    @kafka_consume(topic, group_id=group)
    @transaction()
    def k_dedup(topic: str, partition: int, message: KafkaMessage) -> None:
        eoflow.db().execute("INSERT INTO ledger VALUES (?, ?, ?)",
                            (json.loads(message.value)["id"], partition, message.offset))

    produce_ids(broker, topic, range(100))
    with Engine(journal=journal_path) as engine:
        create_ledger(engine)
        engine.consume(k_dedup, brokers=broker)
        wait_until(lambda: len(ledger_counts(engine)) == 100, 60, "100 rows")
    reset_group(broker, group, topic)  # the same offsets will be delivered again
    produce_ids(broker, topic, range(100, 110))
    with Engine(journal=journal_path) as engine:
        engine.consume(k_dedup, brokers=broker)
        wait_until(lambda: len(ledger_counts(engine)) == 110, 60, "110 rows")
        assert set(ledger_counts(engine).values()) == {1}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_poison_message_is_quarantined_and_the_partition_moves_on(
        broker: str, journal_path: str, backend: str, caplog: pytest.LogCaptureFixture) -> None:
    topic = new_topic(broker, partitions=1)
    healed = {"yes": False}

    @kafka_consume(topic, group_id=f"g-{topic}", max_attempts=3, retry_interval=0.05)
    @transaction()
    def k_strict(topic: str, partition: int, message: KafkaMessage) -> None:
        data = json.loads(message.value)  # raises on a value that is not JSON
        if data["id"] == 5 and not healed["yes"]:
            raise ValueError("id 5 is not allowed")
        app_sql("INSERT INTO ledger VALUES (?, ?, ?)", (data["id"], partition, message.offset))

    values = [json.dumps({"id": i}).encode() for i in range(10)]
    values.insert(3, b"\xff not json")
    produce(broker, topic, values)
    with Engine(journal=journal_path) as engine:
        create_ledger(engine)
        with caplog.at_level(logging.WARNING, logger="eoflow.kafka"):
            engine.consume(k_strict, brokers=broker)
            wait_until(lambda: len(ledger_counts(engine)) == 9, 60, "9 good messages")
            wait_until(lambda: len(engine.journal.quarantined()) == 2, 30, "2 quarantined")
        quarantined = {q.offset: q for q in engine.journal.quarantined()}
        assert set(quarantined) == {3, 6}
        assert quarantined[3].value == b"\xff not json" and quarantined[3].attempts == 3
        assert "JSONDecodeError" in quarantined[3].error or "UnicodeDecodeError" in \
            quarantined[3].error
        assert "id 5 is not allowed" in quarantined[6].error
        assert "quarantined after 3 attempts" in caplog.text
        # Offsets were committed past the poison: ids after it were applied, in order.
        inserted = "rowid" if backend == "sqlite" else "ctid"  # the order rows were written in
        rows = engine.runtime.txstore.committer.read(lambda c: c.execute(
            f'SELECT "offset" FROM ledger ORDER BY {inserted}').fetchall())
        assert [r[0] for r in rows] == sorted(r[0] for r in rows)
        # Fixed, the message can be retried, and applies exactly once.
        healed["yes"] = True
        engine.retry_quarantined(quarantined[6].key)
        assert ledger_counts(engine)[5] == 1
        assert engine.journal.get_quarantined(quarantined[6].key).status == "RETRIED"
        engine.retry_quarantined(quarantined[6].key)  # twice changes nothing
        assert ledger_counts(engine)[5] == 1


def test_partition_order_is_kept_by_default(broker: str, journal_path: str) -> None:
    topic = new_topic(broker, partitions=2)

    @step()
    def k_note(partition: int, offset: int) -> None:
        seen.append((partition, offset))

    @kafka_consume(topic, group_id=f"g-{topic}")
    @workflow()
    def k_ordered(topic: str, partition: int, message: KafkaMessage) -> None:
        k_note(partition, message.offset)

    seen: list[tuple[int, int]] = []
    produce_ids(broker, topic, range(400))
    with Engine(journal=journal_path, workers=16) as engine:
        engine.consume(k_ordered, brokers=broker)
        wait_until(lambda: len(seen) == 400, 60, "400 workflows")
    for partition in (0, 1):
        offsets = [o for p, o in seen if p == partition]
        assert offsets == sorted(offsets) and len(offsets) == len(set(offsets))


def test_key_order_keeps_each_keys_order_and_runs_keys_concurrently(
        broker: str, journal_path: str) -> None:
    topic = new_topic(broker, partitions=1)
    lock = threading.Lock()
    running: dict[str, int] = {}
    most = {"key": 0, "all": 0}

    @step()
    def k_work(key: str, offset: int) -> None:
        with lock:
            running[key] = running.get(key, 0) + 1
            most["key"] = max(most["key"], running[key])
            most["all"] = max(most["all"], sum(running.values()))
        time.sleep(0.002 * (80 - offset))  # earlier messages take longer: unordered would reorder
        with lock:
            running[key] -= 1
            seen.append((key, offset))

    @kafka_consume(topic, group_id=f"g-{topic}", ordered="key")
    @workflow()
    def k_by_key(topic: str, partition: int, message: KafkaMessage) -> None:
        k_work((message.key or b"-").decode(), message.offset)

    seen: list[tuple[str, int]] = []
    producer = Producer((broker,))
    for n in range(80):  # one partition: keys a..d interleaved, and some keyless messages
        producer.send(topic, b"{}", key=None if n % 10 == 9 else "abcd"[n % 4].encode())
    producer.flush()
    producer.close()
    with Engine(journal=journal_path, workers=8) as engine:
        engine.consume(k_by_key, brokers=broker)
        wait_until(lambda: len(seen) == 80, 60, "80 workflows")
    for key in "abcd-":
        offsets = [o for k, o in seen if k == key]
        assert offsets == sorted(offsets) and len(offsets) > 0
    assert most["key"] == 1  # never two runs of one key at once
    assert most["all"] > 1  # but different keys of one partition ran at the same time


def test_refused_settings_and_misplaced_decorators() -> None:
    with pytest.raises(DefinitionError, match="enable_auto_commit"):
        kafka_consume("t", enable_auto_commit=True)
    with pytest.raises(DefinitionError, match="value_deserializer"):
        kafka_consume("t", value_deserializer=bytes.decode)
    with pytest.raises(DefinitionError, match="goes above @workflow"):
        @kafka_consume("t")
        def plain(topic: str, partition: int, message: KafkaMessage) -> None: ...


def test_default_group_id_is_derived_from_the_name(tmp_path: Path) -> None:
    @kafka_consume("some-topic")
    @workflow()
    def k_default_group(topic: str, partition: int, message: KafkaMessage) -> None: ...

    spec = k_default_group.__eoflow__.consumers[0]
    assert spec.group_id == "eoflow-test_default_group_id_is_derived_from_the_name.<locals>." \
                            "k_default_group"

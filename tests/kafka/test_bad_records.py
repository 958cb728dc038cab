"""A record the client cannot decode (a header key that is not UTF-8, which non-Java
producers can write) is quarantined and skipped: before this, kafka-python raised once, then
spun in poll() for ever and the partition never moved again."""

from __future__ import annotations

import base64
import json

import pytest
from kafka import KafkaProducer

import eoflow
from eoflow import Engine, KafkaMessage, kafka_consume, transaction
from eoflow.errors import QuarantineError
from eoflow.journal import admin, views

from .conftest import new_topic, wait_until
from .test_consume import create_ledger, ledger_counts


class NotUtf8(str):
    """A header key whose bytes on the wire are not UTF-8 (kafka-python's producer asks the
    key to encode itself)."""

    def encode(self, *args: object, **kwargs: object) -> bytes:  # type: ignore[override]
        return b"\xff\xfe"


def test_an_undecodable_record_is_quarantined_and_skipped(broker: str,
                                                          journal_path: str) -> None:
    topic = new_topic(broker, partitions=1)
    producer = KafkaProducer(bootstrap_servers=[broker])
    try:
        producer.send(topic, json.dumps({"id": 0}).encode(), partition=0).get(30)
        producer.send(topic, b"{}", partition=0, headers=[(NotUtf8("k"), b"v")]).get(30)
        producer.send(topic, json.dumps({"id": 2}).encode(), partition=0).get(30)
    finally:
        producer.close()

    @kafka_consume(topic, group_id=f"bad-{topic}")
    @transaction(name="bad_records_apply")
    def apply(topic: str, partition: int, message: KafkaMessage) -> None:
        eoflow.db().execute("INSERT INTO ledger(id) VALUES (?)",
                            (json.loads(message.value or b"{}")["id"],))

    with Engine(journal=journal_path, brokers=broker) as engine:
        create_ledger(engine)
        engine.consume(apply)
        wait_until(lambda: sorted(ledger_counts(engine)) == [0, 2], 60, "the good records")
        record = engine.journal.get_quarantined(f"kafka:{topic}:0:1:bad-{topic}")
        assert record is not None and record.offset == 1
        assert "UndecodableRecordError" in record.error and "utf-8" in record.error.lower()
        # Its raw bytes are kept: the record batch that holds it, as the broker sent it.
        assert record.raw is not None and b"\xff\xfe" in record.raw and b"{}" in record.raw
        assert int.from_bytes(record.raw[:8], "big") <= 1  # the batch's base offset
        assert b'"id": 2' not in record.raw  # that batch only
        assert views.quarantined_view(record)["raw_base64"] == base64.b64encode(
            record.raw).decode()
        # It cannot be applied (its fields are unknown), only dropped.
        with pytest.raises(QuarantineError, match="could not decode"):
            engine.retry_quarantined(record.key)
        with pytest.raises(QuarantineError, match="could not decode"):
            admin.request_quarantine_retry(journal_path, record.key)
        assert admin.request_quarantine_retries(journal_path, None, None) == []
        admin.drop_quarantined(journal_path, record.key)
        dropped = engine.journal.get_quarantined(record.key)
        assert dropped is not None and dropped.status == "DROPPED"
        with pytest.raises(QuarantineError, match="is DROPPED"):
            admin.drop_quarantined(journal_path, record.key)
        with pytest.raises(QuarantineError, match="dropped by an operator"):
            engine.retry_quarantined(record.key)

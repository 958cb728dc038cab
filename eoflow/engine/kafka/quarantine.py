"""Applying a quarantined Kafka message again, after a fix: by the API, or at an operator's
request from the CLI (`eoflow quarantine retry`). Its key still makes it apply at most once."""

from __future__ import annotations

import logging

from eoflow.engine.kafka.defs import CONSUMERS, KafkaMessage, handler_work
from eoflow.engine.kafka.lanes import lane_of
from eoflow.engine.runtime import Runtime
from eoflow.errors import QuarantineError
from eoflow.journal import codec
from eoflow.journal.operator import retry_refusal
from eoflow.journal.txstore import Applied

log = logging.getLogger("eoflow.kafka")


def retry_quarantined(rt: Runtime, key: str) -> bool:
    """Apply a quarantined message again (after a fix). True if it is now applied; its
    idempotency key still guarantees it is applied once. Raises the handler's error again."""
    record = rt.journal.get_quarantined(key)
    if record is None:
        raise QuarantineError(key, "no quarantined message has this key; see `eoflow status`")
    if record.status == "RETRIED":
        return True
    refusal = retry_refusal(key, status=record.status, attempts=record.attempts)
    if refusal is not None:
        raise refusal
    spec = CONSUMERS.get(record.handler)
    if spec is None:
        raise QuarantineError(key, f"its handler {record.handler!r} is not defined in this app")
    headers = tuple((str(k), bytes(v)) for k, v in codec.decode(record.headers))
    message = KafkaMessage(record.topic, record.partition, record.offset, record.message_key,
                           record.value, headers, record.timestamp_ms)
    result = rt.txstore.apply_keyed(
        [(key, spec.name, handler_work(spec, message), lane_of(spec, message))],
        rt.clock.now_ms())[0]
    if result.outcome is Applied.FAILED:
        assert result.error is not None
        rt.journal.set_quarantine_status(key, "QUARANTINED", codec.encode_error(result.error),
                                             1)
        raise result.error
    rt.journal.set_quarantine_status(key, "RETRIED")
    log.info("kafka %s: quarantined message %s applied by a retry", spec.name, key)
    return True

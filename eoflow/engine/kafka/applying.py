"""The transaction path of a Kafka batch: the messages applied in one journal transaction,
each in its own savepoint with its key; a message that raises retried alone, with backoff,
and quarantined once it has used its attempts. Its key makes a redelivery harmless."""

from __future__ import annotations

import logging
import threading

from eoflow.engine import backoff
from eoflow.engine.kafka.defs import ConsumerSpec, KafkaMessage, handler_work
from eoflow.engine.kafka.lanes import lane_of
from eoflow.engine.runtime import Runtime
from eoflow.errors import KafkaConsumeError
from eoflow.journal import codec
from eoflow.journal.records import KafkaKey
from eoflow.journal.txstore import Applied

log = logging.getLogger("eoflow.kafka")
TX_BATCH_BUDGET = 0.05  # seconds one transaction of handlers may hold the journal's writer
Keyed = tuple[KafkaKey, KafkaMessage]


def apply_batch(rt: Runtime, spec: ConsumerSpec, pending: list[Keyed],
                stop: threading.Event) -> None:
    """Apply every message of a batch, or quarantine it; raises KafkaConsumeError if the
    engine stops while messages wait for a retry (they come back on the next start)."""
    attempts: dict[str, int] = {}
    while pending:
        items = [(k.key, spec.name, handler_work(spec, m), lane_of(spec, m))
                 for k, m in pending]
        results = rt.txstore.apply_keyed(items, rt.clock.now_ms(), TX_BATCH_BUDGET,
                                         at_once=not attempts)  # retries: one by one
        retry: list[Keyed] = []
        failed: list[int] = []  # the attempt counts of the messages to retry
        for (key, message), result in zip(pending, results, strict=True):
            if result.outcome is Applied.SKIPPED:  # behind a failure in its partition
                retry.append((key, message))
            elif result.outcome is Applied.FAILED:
                tries = attempts[key.key] = attempts.get(key.key, 0) + 1
                if tries >= spec.max_attempts:
                    quarantine(rt, spec, key, message, result.error, tries)
                else:
                    log.warning("kafka %s: message %s failed (attempt %d of %d): %s",
                                spec.name, key.key, tries, spec.max_attempts,
                                codec.describe(result.error))
                    retry.append((key, message))
                    failed.append(tries)
        pending = retry
        # Each message's retries wait from retry_interval up: a message does not pay for
        # the failures of the messages before it.
        if failed and stop.wait(backoff.delay(spec.retry_interval, 2.0, 30.0, min(failed))):
            raise KafkaConsumeError(spec.name, "stopping with messages left to retry; "
                                    "they come back on the next start")


def quarantine(rt: Runtime, spec: ConsumerSpec, key: KafkaKey, message: KafkaMessage,
               error: BaseException | None, attempts: int) -> None:
    """Set a message aside, with its error, once it has failed `attempts` times."""
    assert error is not None
    rt.journal.quarantine(
        key, spec.name, message.key, message.value,
        codec.encode([list(h) for h in message.headers]), message.timestamp,
        codec.encode_error(error), attempts, rt.clock.now_ms())
    count_quarantined(rt, spec)
    log.error("kafka %s: message %s quarantined after %d attempts: %s; see `eoflow status`, "
              "retry with `eoflow quarantine retry %s`", spec.name, key.key, attempts,
              codec.describe(error), key.key, extra=key.log_fields())


def count_quarantined(rt: Runtime, spec: ConsumerSpec) -> None:
    """The eoflow.kafka.messages.quarantined metric."""
    if rt.telemetry is not None:
        rt.telemetry.counted("kafka_quarantined", 1, consumer=spec.name)

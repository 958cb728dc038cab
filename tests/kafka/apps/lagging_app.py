"""An app for the consumer-lag metric test: a slow transaction handler reading one message per
poll from LAG_TOPIC, so a backlog drains slowly while the test scrapes the metrics."""

from __future__ import annotations

import os
import time

from eoflow import KafkaMessage, kafka, kafka_consume, transaction


@kafka(brokers=[os.environ["LAG_BROKER"]])
class Lagging:
    @kafka_consume(os.environ["LAG_TOPIC"], group_id="lagging", max_poll_records=1)
    @transaction()
    def lg_apply(topic: str, partition: int, message: KafkaMessage) -> None:
        time.sleep(0.1)

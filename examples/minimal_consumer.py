"""The smallest exactly-once consumer: every message on example-topic starts one durable
workflow, exactly once, whatever happens to this process.

    eoflow run examples/minimal_consumer.py --brokers 127.0.0.1:9092
"""

import eoflow
from eoflow import KafkaMessage, kafka, kafka_consume, workflow


@kafka(brokers=["localhost:9092"])
class KafkaExample:
    @kafka_consume("example-topic", group_id="custom-group-id")
    @workflow()
    def kafka_workflow(topic: str, partition: int, message: KafkaMessage) -> None:
        eoflow.logger.info("Message received: %s", message.value)

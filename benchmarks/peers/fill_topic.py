"""Create a Kafka topic and fill it with N JSON messages of about 1 KB each.

Each message value is JSON ``{"id": "<run>-<n>", "n": <n>, "pad": "xxx..."}``
padded to roughly ``--size`` bytes; ids are unique within and across runs.
Uses kafka-python only, so it runs in the eoflow venv and the DBOS venv alike.
Prints one JSON line on stdout: {"topic", "count", "partitions", "seconds"}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError


def make_value(run: str, n: int, size: int) -> bytes:
    body = {"id": f"{run}-{n}", "n": n, "pad": ""}
    base = len(json.dumps(body).encode())
    body["pad"] = "x" * max(0, size - base)
    return json.dumps(body).encode()


def create_topic(brokers: str, topic: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=brokers, client_id="fill-topic-admin")
    try:
        admin.create_topics([NewTopic(name=topic, num_partitions=partitions, replication_factor=1)])
        print(f"created topic {topic} ({partitions} partitions)", file=sys.stderr)
    except TopicAlreadyExistsError:
        print(f"topic {topic} already exists", file=sys.stderr)
    finally:
        admin.close()


def fill(brokers: str, topic: str, count: int, size: int) -> None:
    run = uuid.uuid4().hex[:8]
    producer = KafkaProducer(bootstrap_servers=brokers, linger_ms=5, acks=1)
    try:
        futures = [
            producer.send(topic, key=str(n).encode(), value=make_value(run, n, size))
            for n in range(count)
        ]
        producer.flush()
        for fut in futures:
            fut.get(timeout=30)  # raise if any send failed
    finally:
        producer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--brokers", required=True, help="HOST:PORT[,HOST:PORT]")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--size", type=int, default=1024, help="approx value bytes")
    args = parser.parse_args()

    start = time.perf_counter()
    create_topic(args.brokers, args.topic, args.partitions)
    fill(args.brokers, args.topic, args.count, args.size)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "topic": args.topic,
                "count": args.count,
                "partitions": args.partitions,
                "seconds": round(seconds, 3),
            }
        )
    )


if __name__ == "__main__":
    main()

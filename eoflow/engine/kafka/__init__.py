"""Kafka: what to consume (defs), the consumer loop, and the one kafka-python importer (source)."""

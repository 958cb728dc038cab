"""The idempotency key of a Kafka message: its format, and reading it back.

The key is also the workflow id of the run a message starts. The journal reads keys back to
know which partition and offset a key or a run belongs to: retention may only forget a message
that the consumer will never read again (one below its partition's mark, see retention.py).
"""

from __future__ import annotations

from dataclasses import dataclass


def message_key(group_id: str, topic: str, partition: int, offset: int,
                incarnation: int = 0) -> str:
    """The idempotency key of a Kafka message, and the workflow id of the run it starts.

    Format: `kafka:{topic}:{partition}:{offset}:{group_id}`. Topic names cannot contain ':',
    partition and offset are integers, and the group id comes last, so the key is unambiguous.
    This format is the dedup key for redelivered messages: never change it. A topic recreated
    under the same name (a new incarnation, see `eoflow kafka restart-topic`) starts its
    offsets again: its keys carry `@{incarnation}` after the offset, so they never collide
    with the old ones (incarnation 0 keeps the original format).
    """
    if incarnation:
        return f"kafka:{topic}:{partition}:{offset}@{incarnation}:{group_id}"
    return f"kafka:{topic}:{partition}:{offset}:{group_id}"


@dataclass(frozen=True)
class ParsedKey:
    group_id: str
    topic: str
    partition: int
    offset: int
    incarnation: int


def parse_message_key(key: str) -> ParsedKey | None:
    """The parts of a key made by `message_key`, or None for any other id."""
    if not key.startswith("kafka:"):
        return None
    parts = key.split(":", 4)
    if len(parts) != 5:
        return None
    _, topic, partition, position, group = parts
    offset, _, incarnation = position.partition("@")
    try:
        return ParsedKey(group, topic, int(partition), int(offset),
                         int(incarnation) if incarnation else 0)
    except ValueError:
        return None

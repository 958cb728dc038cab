"""Each partition's mark: the highest offset the journal has recorded for a consumer group.

The mark is noted after the messages up to it are durably recorded (as runs, as keys applied
with their transactions, or in quarantine), so every message at or below it is recorded, or
was never delivered (an offset Kafka skipped). The consumer never handles a message at or
below the mark again: it drops such messages and seeks past them, which makes it start each
partition from the later of Kafka's committed offset and the mark. That is what lets retention
forget the keys below the mark (journal/retention.py), and it spares a full re-read when
Kafka has expired an idle group's committed offsets.
"""

from __future__ import annotations

from collections.abc import Sequence

from eoflow.engine.kafka.defs import KafkaMessage
from eoflow.journal.interface import Journal
from eoflow.journal.records import KafkaKey

Partition = tuple[str, int]


class Marks:
    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self._highest: dict[Partition, int] = {}

    def load(self, journal: Journal) -> None:
        """Read the group's marks again (after an assignment, or a topic's new incarnation,
        whose marks the operator's restart-topic removed)."""
        self._highest = {(topic, partition): offset
                         for group, topic, partition, offset, _, _ in journal.kafka_offsets()
                         if group == self.group_id}

    def unrecorded(self, batch: Sequence[KafkaMessage]
                   ) -> tuple[list[KafkaMessage], dict[Partition, int]]:
        """The messages of `batch` above their partition's mark, and where to seek the
        partitions that had nothing above it (their next offset to read)."""
        highest = self._highest
        fresh = [m for m in batch if m.offset > highest.get((m.topic, m.partition), -1)]
        if len(fresh) == len(batch):
            return fresh, {}
        kept = {(m.topic, m.partition) for m in fresh}
        seeks = {(m.topic, m.partition): highest[(m.topic, m.partition)] + 1 for m in batch
                 if (m.topic, m.partition) not in kept}
        return fresh, seeks

    def advance(self, keys: Sequence[KafkaKey]) -> None:
        """Keys just recorded (the journal notes them too, see Journal.note_offsets)."""
        for k in keys:
            partition = (k.topic, k.partition)
            if k.offset > self._highest.get(partition, -1):
                self._highest[partition] = k.offset

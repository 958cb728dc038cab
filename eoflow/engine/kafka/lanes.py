"""The lanes that keep a partition's (or a key's) runs in offset order, and how a partition
that moved between engines keeps that order.

A run's lane is its partition's (`ordered=True`), its key's within the partition
(`ordered="key"`), or none. The worker pool runs a lane's runs one at a time, in the order they
were submitted. With several engines on one journal, a partition can move to this engine while
runs of its lane are still PENDING under another executor: the previous consumer, finishing
them, or a dead one whose runs this engine will take over once its lease runs out. New runs of
that partition then wait (`LaneGate`) until none is left with another executor, nor held
here behind such runs (engine/heldlanes.py), so that they never overtake older ones.
"""

from __future__ import annotations

import hashlib
import logging
import threading

from eoflow.engine.kafka.defs import ConsumerSpec, KafkaMessage
from eoflow.engine.runtime import Runtime
from eoflow.errors import EngineClosedError

log = logging.getLogger("eoflow.kafka")
Partition = tuple[str, int]


def lane_of(spec: ConsumerSpec, message: KafkaMessage) -> str:
    return f"kafka:{message.topic}:{message.partition}:{spec.group_id}"


def workflow_lane(spec: ConsumerSpec, message: KafkaMessage) -> str | None:
    """The lane of a message's workflow run: its partition's, its key's within the partition
    (by a digest: two keys sharing one only run in sequence), or none at all."""
    if spec.ordered == "key" and message.key is not None:
        digest = hashlib.blake2b(message.key, digest_size=8).hexdigest()
        return f"{lane_of(spec, message)}:key:{digest}"
    return lane_of(spec, message) if spec.ordered else None


class LaneGate:
    """Holds a newly assigned partition's new runs back while runs of its lanes are PENDING
    under another executor (see the module docstring)."""

    POLL = 0.2  # seconds between looks while waiting

    def __init__(self, rt: Runtime, spec: ConsumerSpec, stop: threading.Event) -> None:
        self._rt = rt
        self._spec = spec
        self._stop = stop
        self._lock = threading.Lock()
        self._settled: set[Partition] = set()

    def assigned(self, partitions: list[Partition]) -> None:
        """Partitions (re)assigned: each is checked again before its next runs start."""
        with self._lock:
            self._settled.difference_update(partitions)

    def _held(self, lane: str) -> int:
        """PENDING runs of `lane` another executor owns. Under the runtime's lane lock, which a
        takeover holds from its claim until it has queued what it claimed: runs it took over
        are seen as another's, or as this one's and queued ahead, never in between (when a
        new run could overtake them)."""
        if not self._rt.lanes_lock.acquire(blocking=False):
            return 1  # a takeover is queueing what it claimed: look again in a moment
        try:  # runs taken over but held behind older ones (heldlanes.py) come first too
            return self._rt.journal.foreign_lane_runs(lane) + self._rt.held_lanes.count(lane)
        finally:
            self._rt.lanes_lock.release()

    def wait(self, batch: list[KafkaMessage]) -> None:
        """Return once no partition of `batch` has a lane with runs under another executor."""
        if not self._spec.ordered:
            return
        firsts = {(m.topic, m.partition): m for m in reversed(batch)}
        for partition, message in sorted(firsts.items()):
            with self._lock:
                if partition in self._settled:
                    continue
            lane, waited = lane_of(self._spec, message), False
            while (held := self._held(lane)) > 0:
                if not waited:
                    log.info("kafka %s: %s/%d waits for %d earlier run(s) of its lane that "
                             "another executor holds (they finish there, or are taken over "
                             "here), to keep its order", self._spec.name, *partition, held)
                    waited = True
                if self._stop.wait(self.POLL):
                    raise EngineClosedError(self._rt.path)
            with self._lock:
                self._settled.add(partition)

"""Test doubles for the consumer loop's unit tests: a scripted Kafka source, no broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from eoflow.engine.kafka.consumer import Listener, Partition, Source
from eoflow.engine.kafka.defs import KafkaMessage

FactoryArgs = tuple[tuple[str, ...], str, tuple[str, ...], dict[str, Any]]
IDLE_POLL = 0.005  # seconds an empty poll waits (a real one waits up to timeout_ms)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll `condition` every millisecond until it holds; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.001)


def messages(topic: str, partition: int, values: Iterable[bytes]) -> list[KafkaMessage]:
    """A partition's log: offset i holds values[i] (with key b"k{i}")."""
    return [KafkaMessage(topic, partition, offset, f"k{offset}".encode(), value,
                         (("h", b"1"),), 1_700_000_000_000 + offset)
            for offset, value in enumerate(values)]


class FakeSource:
    """A consumer over fixed per-partition logs (offset = index in the list).

    poll serves the assigned partitions in sorted order from their positions, at most
    `max_records` (or `batch`) at a time; commit records offsets; rewind seeks back. Scripts:
    `poll_script` entries are consumed one per poll (an exception is raised, None serves as
    usual); `commit_errors` are raised by the next commits; `before_poll(n)` runs at the start
    of poll number n (from 1), where kafka-python calls the rebalance listeners; `on_commit`
    sees every commit attempt before it happens. The first poll assigns every partition.
    Every call is appended to `events` as (name, detail)."""

    def __init__(self, logs: dict[Partition, list[KafkaMessage]], *,
                 batch: int | None = None) -> None:
        self.logs = logs
        self.batch = batch
        self.positions: dict[Partition, int] = {p: 0 for p in logs}
        self.owned: set[Partition] = set()  # what the group gave this member
        self.committed: dict[Partition, int] = {}
        self.commits: list[dict[Partition, int]] = []  # successful ones, in order
        self.commit_attempts: list[tuple[dict[Partition, int], frozenset[Partition]]] = []
        self.rewinds: list[dict[Partition, int]] = []
        self.events: list[tuple[str, Any]] = []
        self.poll_script: list[BaseException | None] = []
        self.commit_errors: list[BaseException] = []
        self.before_poll: Callable[[int], None] | None = None
        self.on_commit: Callable[[dict[Partition, int]], None] | None = None
        self.polls = 0
        self.paused = False
        self.closed = False
        self.factory_args: FactoryArgs | None = None  # (brokers, group, topics, config)
        self.topic_ids: dict[str, str] = {}  # the broker's id of each topic (none: unknown)
        self._revoked: Listener | None = None
        self._assigned: Listener | None = None
        self._cv = threading.Condition()

    # -- the SourceFactory ----------------------------------------------------------------------

    def factory(self, brokers: tuple[str, ...], group_id: str, topics: tuple[str, ...],
                config: dict[str, Any], revoked: Listener, assigned: Listener) -> Source:
        self.factory_args = (brokers, group_id, topics, config)
        self._revoked, self._assigned = revoked, assigned
        return self

    # -- the Source protocol --------------------------------------------------------------------

    def connect(self) -> None:
        self.events.append(("connect", None))

    def poll(self, timeout_ms: int, max_records: int) -> list[KafkaMessage]:
        with self._cv:
            self.polls += 1
            number = self.polls
            step = self.poll_script.pop(0) if self.poll_script else None
        if self.before_poll is not None:
            self.before_poll(number)
        if number == 1:
            self.assign(sorted(self.logs))
        if step is not None:
            self.events.append(("poll-error", step))
            raise step
        limit = min(max_records, self.batch or max_records)
        batch: list[KafkaMessage] = []
        with self._cv:
            if not self.paused:
                for partition in sorted(self.owned):
                    start = self.positions[partition]
                    taken = self.logs[partition][start:start + limit - len(batch)]
                    self.positions[partition] = start + len(taken)
                    batch.extend(taken)
            if batch:
                self.events.append(("poll", [(m.partition, m.offset) for m in batch]))
            else:
                self._cv.wait(IDLE_POLL)
            self._cv.notify_all()
        return batch

    def commit(self, offsets: dict[Partition, int]) -> None:
        if self.on_commit is not None:
            self.on_commit(dict(offsets))
        with self._cv:
            self.commit_attempts.append((dict(offsets), frozenset(self.owned)))
            if self.commit_errors:
                error = self.commit_errors.pop(0)
                self.events.append(("commit-error", dict(offsets)))
                raise error
            self.commits.append(dict(offsets))
            self.committed.update(offsets)
            self.events.append(("commit", dict(offsets)))
            self._cv.notify_all()

    def rewind(self, offsets: dict[Partition, int]) -> None:
        with self._cv:
            self.positions.update(offsets)
            self.rewinds.append(dict(offsets))
            self.events.append(("rewind", dict(offsets)))
            self._cv.notify_all()

    lags: dict[Partition, int] = {}  # noqa: RUF012 (never written: a fake has no lag)

    def skip(self, topic: str, partition: int, offset: int) -> None:
        self.events.append(("skip", ((topic, partition), offset)))
        self.positions[(topic, partition)] = offset

    def topic_id(self, topic: str) -> str | None:
        return self.topic_ids.get(topic)

    def pause(self, paused: bool) -> None:
        with self._cv:
            self.paused = paused
            self.events.append(("pause", paused))

    def close(self) -> None:
        self.closed = True
        self.events.append(("close", None))

    # -- what the group coordinator and the test do ----------------------------------------------

    def assign(self, partitions: list[Partition]) -> None:
        """The group hands `partitions` to this member: they resume from their committed
        offsets (from the start when none is committed), then the listener is told."""
        assert self._assigned is not None, "assign after the loop created its source"
        with self._cv:
            for partition in partitions:
                self.owned.add(partition)
                self.positions[partition] = self.committed.get(partition, 0)
        self._assigned(list(partitions))

    def revoke(self, partitions: list[Partition]) -> None:
        assert self._revoked is not None, "revoke after the loop created its source"
        with self._cv:
            self.owned.difference_update(partitions)
        self._revoked(list(partitions))

    def redeliver(self) -> None:
        """Serve every partition again from its start (a consumer that lost its position)."""
        with self._cv:
            for partition in self.positions:
                self.positions[partition] = 0
            self.events.append(("redeliver", None))
            self._cv.notify_all()

    def ends(self) -> dict[Partition, int]:
        return {p: len(log) for p, log in self.logs.items()}

    def drained(self) -> bool:
        with self._cv:
            return all(self.positions[p] == len(self.logs[p]) for p in self.owned) \
                and bool(self.owned)

    def wait_committed(self, offsets: dict[Partition, int], since: int = 0,
                       timeout: float = 10.0) -> None:
        """Wait until the commits made after the first `since` reach `offsets`."""

        def reached() -> bool:
            merged: dict[Partition, int] = {}
            for commit in self.commits[since:]:
                merged.update(commit)
            return all(merged.get(p) == o for p, o in offsets.items())

        with self._cv:
            if not self._cv.wait_for(reached, timeout):
                raise AssertionError(f"offsets {offsets} not committed within {timeout}s; "
                                     f"commits: {self.commits[since:]}")

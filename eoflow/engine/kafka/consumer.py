"""The Kafka consumer loop: durable before acknowledged, for workflows and transactions.

For every polled batch:
- workflow path: one journal transaction records a run per message (its id is the message's
  idempotency key, so a redelivered message finds its run and starts nothing), then the offsets
  are committed, then the runs go to the worker pool (one lane per partition, or per key with
  `ordered="key"`, none with `ordered=False`);
- transaction path: one SQLite transaction applies every message, each in its own savepoint with
  its key; a message that raises is retried, then quarantined; then the offsets are committed.

A crash before the offsets are committed makes Kafka deliver the batch again, and the keys make
that harmless. A journal failure rewinds the consumer to the batch start and retries with capped
backoff. Kafka types never appear here: source.py owns the client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from eoflow.engine import crashpoints, runner
from eoflow.engine.backoff import Backoff
from eoflow.engine.kafka.applying import apply_batch, count_quarantined
from eoflow.engine.kafka.defs import (
    DEFAULT_CONSUMER_CONFIG,
    ConsumerSpec,
    KafkaMessage,
    encode_handler_inputs,
    message_key,
)
from eoflow.engine.kafka.lanes import LaneGate, workflow_lane
from eoflow.engine.kafka.marks import Marks
from eoflow.engine.runtime import Runtime
from eoflow.errors import (
    JournalError,
    KafkaConsumeError,
    OffsetCommitError,
    TopicRecreatedError,
    UndecodableRecordError,
)
from eoflow.journal import codec
from eoflow.journal.records import KafkaKey, NewWorkflow, Status

log = logging.getLogger("eoflow.kafka")
Partition = tuple[str, int]
POLL_MS = 500
MAX_IN_FLIGHT = 20_000  # runs recorded but not finished, before the loop pauses fetching


class Source(Protocol):
    """What the loop needs of a Kafka consumer (source.py's KafkaSource; a fake in tests)."""

    def connect(self) -> None: ...
    def poll(self, timeout_ms: int, max_records: int) -> list[KafkaMessage]: ...
    def commit(self, offsets: dict[Partition, int]) -> None: ...
    def rewind(self, offsets: dict[Partition, int]) -> None: ...
    def pause(self, paused: bool) -> None: ...
    def topic_id(self, topic: str) -> str | None: ...
    def skip(self, topic: str, partition: int, offset: int) -> None: ...
    def close(self) -> None: ...
    lags: dict[Partition, int]  # per partition, messages past the last one polled (metrics)


Listener = Callable[[list[Partition]], None]
SourceFactory = Callable[[tuple[str, ...], str, tuple[str, ...], dict[str, Any], Listener,
                          Listener], Source]


def _kafka_source(brokers: tuple[str, ...], group_id: str, topics: tuple[str, ...],
                  config: dict[str, Any], revoked: Listener, assigned: Listener) -> Source:
    from eoflow.engine.kafka.source import KafkaSource  # the only kafka-python user

    return KafkaSource(brokers, group_id, topics, config, revoked, assigned)


class ConsumerLoop:
    """One consumer (one @kafka_consume handler) on its own thread."""

    def __init__(self, rt: Runtime, spec: ConsumerSpec, brokers: tuple[str, ...],
                 source_factory: SourceFactory | None = None) -> None:
        self._rt = rt
        self._source_factory = source_factory or _kafka_source
        self.spec = spec
        self.brokers = brokers
        self._stop = threading.Event()
        self._source: Source | None = None
        self._uncommitted: dict[Partition, int] = {}
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._on_done = self._finished  # one bound method for all runs, not one each
        self._paused = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"eoflow-kafka-{spec.name}")
        self.assigned: set[Partition] = set()
        self._revoked_since_poll: set[Partition] = set()
        self.revocations = 0  # rebalances that took partitions away from this consumer
        self.connected = threading.Event()  # set once the consumer has joined its group
        # The incarnation of each topic this session has checked against the journal; cleared
        # (from kafka-python's thread, hence a flag) when partitions are assigned again.
        self._incarnations: dict[str, int] = {}
        self._marks = Marks(spec.group_id)
        self._recheck = True
        self._gate = LaneGate(rt, spec, self._stop)
        self.last_beat = time.monotonic()
        self._unwatch: Callable[[], None] = lambda: None

    @property
    def describe(self) -> str:
        return (f"{self.spec.name} (group {self.spec.group_id!r}, topics "
                f"{','.join(self.spec.topics)}, brokers {','.join(self.brokers)})")

    def start(self) -> None:
        if self._rt.telemetry is not None:
            self._unwatch = self._rt.telemetry.watch(lag=self._lags)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._unwatch()

    def _lags(self) -> list[tuple[dict[str, Any], int]]:
        """Each assigned partition's lag, as last polled (the eoflow.kafka.consumer.lag gauge)."""
        lags = {} if self._source is None else self._source.lags
        return [({"group": self.spec.group_id, "topic": t, "partition": p}, lag)
                for (t, p), lag in lags.items() if (t, p) in self.assigned]

    # -- the loop -----------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        retries = Backoff()
        while not self._stop.is_set():
            self.last_beat = time.monotonic()  # for the watchdog (start.py)
            try:
                if self._source is None:
                    self._connect()
                self._commit_uncommitted()
                self._throttle()
                batch = self._connected().poll(POLL_MS, self._max_records())
                if batch:
                    self._handle(batch)
                retries.reset()
                continue
            except JournalError as error:
                problem = (f"kafka {self.spec.name}: the journal could not record a batch "
                           f"({error}); offsets stay uncommitted, rewinding")
            except TopicRecreatedError as error:
                log.error("%s", error)
                break
            except UndecodableRecordError as error:
                self._quarantine_undecodable(error)
                continue
            except KafkaConsumeError as error:
                problem = str(error)
            except BaseException as error:  # never let the consumer die, least of all silently
                log.exception("kafka %s: unexpected error", self.spec.name)
                problem = f"kafka {self.spec.name}: unexpected {type(error).__name__}"
            delay = retries.next()
            log.warning("%s; retrying in %.1fs", problem, delay)
            self._stop.wait(delay)
        self._shutdown()

    def _connect(self) -> None:
        config = dict(DEFAULT_CONSUMER_CONFIG)
        config.update(self.spec.config)
        source = self._source_factory(self.brokers, self.spec.group_id, self.spec.topics,
                                      config, self._revoked, self._assigned)
        source.connect()
        self._source = source
        log.info("kafka: consumer %s started", self.describe)

    def _connected(self) -> Source:
        assert self._source is not None, "the loop connects before it polls"
        return self._source

    def _shutdown(self) -> None:
        if self._source is not None:
            try:
                self._commit_uncommitted()
            except KafkaConsumeError as error:
                log.warning("%s; the journal will deduplicate the redelivered messages", error)
            self._source.close()
            self._source = None
        log.info("kafka: consumer %s stopped", self.spec.name)

    def _max_records(self) -> int:
        return int(self.spec.config.get("max_poll_records",
                                        DEFAULT_CONSUMER_CONFIG["max_poll_records"]))

    # -- rebalances ---------------------------------------------------------------------------

    def _assigned(self, partitions: list[Partition]) -> None:
        # Called by kafka-python on its I/O thread while our thread waits in poll(): it must not
        # call blocking consumer methods (a commit here breaks the consumer for good).
        self.assigned.update(partitions)
        self._gate.assigned(partitions)
        self._recheck = True
        self.connected.set()
        log.info("kafka %s: partitions assigned: %s", self.spec.name,
                 ", ".join(f"{t}/{p}" for t, p in sorted(partitions)) or "none")

    def _revoked(self, partitions: list[Partition]) -> None:
        """Partitions move to another member. Every batch was recorded in the journal before
        its offsets were committed, so offsets whose commit failed are simply dropped: the next
        owner gets those messages again, and their keys make that harmless (with this journal).
        Runs on kafka-python's I/O thread, like _assigned."""
        self.assigned.difference_update(partitions)
        self._revoked_since_poll.update(partitions)
        if partitions:
            self.revocations += 1
            log.info("kafka %s: partitions revoked: %s", self.spec.name,
                     ", ".join(f"{t}/{p}" for t, p in sorted(partitions)))

    # -- one batch ----------------------------------------------------------------------------

    def _handle(self, batch: list[KafkaMessage]) -> None:
        starts: dict[Partition, int] = {}
        ends: dict[Partition, int] = {}
        for m in batch:
            starts.setdefault((m.topic, m.partition), m.offset)
            ends[(m.topic, m.partition)] = m.offset + 1
        try:
            self._check_topics(batch)
            batch, seeks = self._marks.unrecorded(batch)
            if seeks:
                log.info("kafka %s: skipping to the journal's marks, past messages it recorded "
                         "already: %s", self.spec.name,
                         ", ".join(f"{t}/{p}@{o}" for (t, p), o in sorted(seeks.items())))
                self._connected().rewind(seeks)
                ends.update(seeks)  # Kafka's committed offset moves up to the mark too
            if batch and self.spec.is_workflow:
                self._record_workflows(batch)
            elif batch:
                self._apply_transactions(batch)
        except BaseException:  # whatever it was, the batch comes back; its keys make that safe
            self._connected().rewind(starts)
            raise
        crashpoints.hit("kafka_recorded")
        self._uncommitted.update(ends)
        self._commit_uncommitted()

    def _commit_uncommitted(self) -> None:
        if self._revoked_since_poll:
            for partition in list(self._revoked_since_poll):
                self._uncommitted.pop(partition, None)
            self._revoked_since_poll.clear()
        if not self._uncommitted:
            return
        offsets = dict(self._uncommitted)
        try:
            self._connected().commit(offsets)
        except OffsetCommitError as error:
            log.warning("%s; will retry (the journal has the messages: nothing is lost)", error)
            return
        crashpoints.hit("kafka_committed")
        self._uncommitted.clear()

    def _check_topics(self, batch: list[KafkaMessage]) -> None:
        """Refuse a topic whose broker id differs from the one the journal recorded: it was
        recreated, its offsets start again, and its messages would be taken for ones already
        applied (skipped in silence). Learn each topic's incarnation for its keys."""
        if self._recheck:
            self._recheck = False
            self._incarnations.clear()
            self._marks.load(self._rt.journal)
        group, journal = self.spec.group_id, self._rt.journal
        for topic in {m.topic for m in batch} - self._incarnations.keys():
            recorded, incarnation = journal.kafka_topic(group, topic)
            current = self._connected().topic_id(topic)
            if current is not None and recorded is None:
                journal.set_kafka_topic_id(group, topic, current, self._rt.clock.now_ms())
            elif current is not None and recorded != current:
                assert recorded is not None
                raise TopicRecreatedError(group, topic, recorded, current, self._rt.path)
            self._incarnations[topic] = incarnation

    def _keys(self, batch: list[KafkaMessage]) -> list[KafkaKey]:
        group, incarnations = self.spec.group_id, self._incarnations
        return [KafkaKey(message_key(group, m.topic, m.partition, m.offset,
                                     incarnations.get(m.topic, 0)),
                         group, m.topic, m.partition, m.offset) for m in batch]

    def _record_workflows(self, batch: list[KafkaMessage]) -> None:
        rt, spec = self._rt, self.spec
        name = spec.definition.name
        now = rt.clock.now_ms()
        keys = self._keys(batch)
        queued = spec.queue is not None  # then the queue starts them, within its limits
        tel = rt.telemetry  # a traceparent header parents the run's trace (engine/otel.py)
        news = [
            NewWorkflow(k.key, name, encode_handler_inputs(m), now, queue=spec.queue,
                        status=Status.ENQUEUED if queued else Status.PENDING,
                        lane=None if queued else workflow_lane(spec, m),
                        trace_context=None if tel is None else
                        tel.start_context(k.key, name, dict(m.headers).get("traceparent", b"")))
            for k, m in zip(keys, batch, strict=True)
        ]
        results: list[tuple[bool, str, Status]] = []
        try:
            results = rt.journal.create_workflows(news, now)
        finally:  # start spans are sent for the runs created (not for a redelivery's)
            if tel is not None:
                tel.settle([n.trace_context for n in news], [r[0] for r in results])
                tel.run_started(name, sum(1 for r in results if r[0]))
        self._note(keys)
        if queued:
            rt.queue_wakeup.set()
            return
        self._gate.wait(batch)
        starts = []
        for new, m, (created, existing, status) in zip(news, batch, results, strict=True):
            if not created and (existing != name or status is not Status.PENDING):
                continue  # already ran (a redelivery): nothing to do
            if not created and runner.held_elsewhere(rt, new.workflow_id):
                continue  # recorded by the partition's previous consumer, which runs it
            run = rt.runs.track(new.workflow_id)
            if not created and run.claimed:
                continue
            if created:
                run.call = ((m.topic, m.partition, m), {})
            starts.append((run, new if created else None, new.lane))
        with self._in_flight_lock:  # once a batch: the workers take it once a run
            self._in_flight += len(starts)
        for run, created_new, lane in starts:
            runner.submit(rt, run, spec.definition, created_new, lane, on_done=self._on_done)

    def _finished(self) -> None:
        with self._in_flight_lock:
            self._in_flight -= 1

    def _throttle(self) -> None:
        """Pause fetching while too many recorded runs wait for a worker (memory stays
        bounded; the journal already holds them)."""
        with self._in_flight_lock:
            busy = self._in_flight >= MAX_IN_FLIGHT
        if busy != self._paused:
            self._connected().pause(busy)
            self._paused = busy

    def _apply_transactions(self, batch: list[KafkaMessage]) -> None:
        keys = self._keys(batch)
        apply_batch(self._rt, self.spec, list(zip(keys, batch, strict=True)), self._stop)
        self._note(keys)

    def _note(self, keys: list[KafkaKey]) -> None:
        """Move the marks past messages now durably recorded (applied, run or quarantined)."""
        self._rt.journal.note_offsets(keys, self._rt.clock.now_ms())
        self._marks.advance(keys)
        if self._rt.telemetry is not None:
            self._rt.telemetry.counted("kafka_recorded", len(keys), consumer=self.spec.name)

    def _quarantine_undecodable(self, error: UndecodableRecordError) -> None:
        """A record the client cannot decode: quarantine what is known of it (its position, the
        client's error, and the raw bytes of the record batch that holds it), then go on past
        it."""
        group, topic, partition, offset = (self.spec.group_id, error.topic, error.partition,
                                           error.offset)
        incarnation = self._incarnations.get(topic)
        if incarnation is None:
            incarnation = self._rt.journal.kafka_topic(group, topic)[1]
        key = KafkaKey(message_key(group, topic, partition, offset, incarnation), group, topic,
                       partition, offset)
        self._rt.journal.quarantine(key, self.spec.name, None, None, "[]", None,
                                    codec.encode_error(error), 0, self._rt.clock.now_ms(),
                                    raw=error.raw)
        self._note([key])
        count_quarantined(self._rt, self.spec)
        log.error("kafka %s: %s; quarantined as %s, going on past it", self.spec.name, error,
                  key.key, extra=key.log_fields())
        self._connected().skip(topic, partition, offset + 1)
        self._uncommitted[(topic, partition)] = offset + 1  # committed once durable, as usual

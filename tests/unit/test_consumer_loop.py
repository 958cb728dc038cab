"""The Kafka consumer loop against a fake source: durable before committed, exactly once on
both paths, partition order, rewind on journal errors, poison messages, rebalances, throttling
and backoff. A real engine and journal; no broker."""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import eoflow
from eoflow import Engine, KafkaMessage, Status, kafka_consume, transaction, workflow
from eoflow.engine.backoff import Backoff
from eoflow.engine.kafka import applying, consumer
from eoflow.engine.kafka.consumer import ConsumerLoop, Partition
from eoflow.engine.kafka.defs import message_key
from eoflow.engine.registry import definition_of
from eoflow.errors import JournalError, KafkaConsumeError, OffsetCommitError
from eoflow.journal import codec
from eoflow.journal.batching import GroupCommitter
from eoflow.journal.connection import connect
from eoflow.journal.txstore import SqlTxStore

from .fakes import FakeSource, messages, wait_until

TX_TOPIC, TX_GROUP = "cl-ledger", "cl-g-ledger"
WF_TOPIC, WF_GROUP = "cl-flow", "cl-g-flow"
PLAIN_TOPIC, PLAIN_GROUP = "cl-plain", "cl-g-plain"
POISON_TOPIC, POISON_GROUP = "cl-poison", "cl-g-poison"

LOCK = threading.Lock()
CALLS: Counter[tuple[int, int]] = Counter()  # handler calls per (partition, offset)
CALL_LOG: list[tuple[int, int]] = []  # handler calls, in order
FINISHED: list[tuple[int, int]] = []  # workflow bodies that returned, in order
ACTIVE: Counter[int] = Counter()  # running workflow bodies per partition
PEAK: Counter[int] = Counter()  # the most that ever ran at once per partition
HEADS = threading.Semaphore(0)  # released when a gated head (offset 0) starts
GATE = threading.Event()  # opens the gated heads


def note_call(partition: int, offset: int) -> None:
    with LOCK:
        CALLS[(partition, offset)] += 1
        CALL_LOG.append((partition, offset))


@kafka_consume(TX_TOPIC, group_id=TX_GROUP)
@transaction()
def cl_apply(topic: str, partition: int, message: KafkaMessage) -> None:
    note_call(partition, message.offset)
    eoflow.db().execute("INSERT INTO cl_ledger(partition, offset, value) VALUES (?, ?, ?)",
                        (partition, message.offset, message.value))


@kafka_consume(POISON_TOPIC, group_id=POISON_GROUP, max_attempts=3, retry_interval=0.01)
@transaction()
def cl_poison(topic: str, partition: int, message: KafkaMessage) -> None:
    note_call(partition, message.offset)
    if message.value == b"poison":
        raise ValueError(f"cannot parse offset {message.offset}")
    eoflow.db().execute("INSERT INTO cl_ledger(partition, offset, value) VALUES (?, ?, ?)",
                        (partition, message.offset, message.value))


@kafka_consume(WF_TOPIC, group_id=WF_GROUP)
@workflow()
def cl_flow(topic: str, partition: int, message: KafkaMessage) -> int:
    """Offset 0 of each partition waits for GATE: the runs behind it must wait too."""
    note_call(partition, message.offset)
    with LOCK:
        ACTIVE[partition] += 1
        PEAK[partition] = max(PEAK[partition], ACTIVE[partition])
    if message.offset == 0:
        HEADS.release()
        GATE.wait(10)
    with LOCK:
        ACTIVE[partition] -= 1
        FINISHED.append((partition, message.offset))
    return message.offset


@kafka_consume(PLAIN_TOPIC, group_id=PLAIN_GROUP)
@workflow()
def cl_plain(topic: str, partition: int, message: KafkaMessage) -> int:
    note_call(partition, message.offset)
    return message.offset * 10


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    with LOCK:
        for table in (CALLS, ACTIVE, PEAK):
            table.clear()
        CALL_LOG.clear()
        FINISHED.clear()
    GATE.clear()
    while HEADS.acquire(blocking=False):
        pass
    yield
    GATE.set()  # never leave a workflow blocked


@pytest.fixture
def kengine(journal_path: str, _reset: None) -> Iterator[Engine]:
    engine = Engine(journal=journal_path, workers=4, grace_period=2)
    try:
        committer(engine).write(lambda conn: conn.execute(
            "CREATE TABLE cl_ledger(partition INTEGER, offset INTEGER, value BLOB)"))
        yield engine
    finally:
        GATE.set()
        engine.close()


@contextmanager
def running(engine: Engine, handler: Callable[..., Any], fake: FakeSource
            ) -> Iterator[ConsumerLoop]:
    spec = definition_of(handler).consumers[0]
    loop = ConsumerLoop(engine.runtime, spec, ("fake:1",), source_factory=fake.factory)
    loop.start()
    try:
        yield loop
    finally:
        GATE.set()
        loop.stop()
    assert fake.closed, "the loop stopped without closing its source"


def committed_rows(path: str, sql: str) -> list[tuple[Any, ...]]:
    """What another connection sees: only what is committed to the journal file."""
    conn = connect(path, readonly=True)
    try:
        return [tuple(row) for row in conn.execute(sql)]
    finally:
        conn.close()


def committer(engine: Engine) -> GroupCommitter:
    store = engine.runtime.txstore
    assert isinstance(store, SqlTxStore)
    return store.committer


def ledger(engine: Engine) -> list[tuple[int, int]]:
    return committer(engine).read(lambda conn: [
        (int(p), int(o)) for p, o in conn.execute(
            "SELECT partition, offset FROM cl_ledger ORDER BY rowid")])


def durability_check(path: str, group: str, rows_too: bool, violations: list[str]
                     ) -> Callable[[dict[Partition, int]], None]:
    """An on_commit hook: every message below a committed offset is already in the journal
    file: its key and its cl_ledger row (`rows_too`), or its workflow run."""

    def check(offsets: dict[Partition, int]) -> None:
        if rows_too:
            keys = {r[0] for r in committed_rows(path, "SELECT key FROM eoflow_kafka_keys")}
            rows = set(committed_rows(path, "SELECT partition, offset FROM cl_ledger"))
        else:
            keys = {r[0] for r in committed_rows(path, "SELECT workflow_id FROM "
                                                       "eoflow_workflows")}
            rows = None
        for (topic, partition), end in offsets.items():
            for offset in range(end):
                key = message_key(group, topic, partition, offset)
                if key not in keys or (rows is not None and (partition, offset) not in rows):
                    violations.append(f"committed {topic}/{partition}@{end} before {key} "
                                      "was durable")

    return check


def retry_delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    found = []
    for record in list(caplog.records):
        if record.name == "eoflow.kafka" and record.levelno == logging.WARNING:
            match = re.search(r"retrying in ([0-9.]+)s$", record.getMessage())
            if match:
                found.append(float(match.group(1)))
    return found


# -- the transaction path -------------------------------------------------------------------


def test_transactions_apply_each_message_once_and_commit_after_durable(
        kengine: Engine, journal_path: str) -> None:
    p0, p1 = (TX_TOPIC, 0), (TX_TOPIC, 1)
    fake = FakeSource({p0: messages(TX_TOPIC, 0, [b"a%d" % i for i in range(10)]),
                       p1: messages(TX_TOPIC, 1, [b"b%d" % i for i in range(7)])}, batch=4)
    violations: list[str] = []
    fake.on_commit = durability_check(journal_path, TX_GROUP, True, violations)
    expected = [(0, o) for o in range(10)] + [(1, o) for o in range(7)]
    with running(kengine, cl_apply, fake) as loop:
        fake.wait_committed({p0: 10, p1: 7})
        assert sorted(ledger(kengine)) == expected
        assert loop.assigned == {p0, p1} and loop.connected.is_set()
        # Kafka delivers everything again (a lost position): the keys make it harmless.
        since = len(fake.commits)
        fake.redeliver()
        fake.wait_committed({p0: 10, p1: 7}, since)
    assert fake.factory_args is not None
    brokers, group, topics, config = fake.factory_args
    assert (brokers, group, topics) == (("fake:1",), TX_GROUP, (TX_TOPIC,))
    assert "enable_auto_commit" not in config and config["auto_offset_reset"] == "earliest"
    assert violations == []
    assert sorted(ledger(kengine)) == expected  # nothing applied twice
    assert set(CALLS.values()) == {1} and len(CALLS) == 17  # duplicates never reach the handler
    keys = committed_rows(journal_path, "SELECT key, handler FROM eoflow_kafka_keys")
    assert sorted(keys) == sorted((message_key(TX_GROUP, TX_TOPIC, p, o), "cl_apply")
                                  for p, o in expected)
    assert [row for row in ledger(kengine) if row[0] == 0] == [(0, o) for o in range(10)]


# -- the workflow path ----------------------------------------------------------------------


def test_workflows_one_run_per_message_in_partition_order(kengine: Engine,
                                                          journal_path: str) -> None:
    p0, p1 = (WF_TOPIC, 0), (WF_TOPIC, 1)
    fake = FakeSource({p0: messages(WF_TOPIC, 0, [b"x"] * 6),
                       p1: messages(WF_TOPIC, 1, [b"y"] * 5)}, batch=4)
    violations: list[str] = []
    fake.on_commit = durability_check(journal_path, WF_GROUP, False, violations)
    ids = {(p, o): message_key(WF_GROUP, WF_TOPIC, p, o)
           for p, n in ((0, 6), (1, 5)) for o in range(n)}
    with running(kengine, cl_flow, fake):
        # Both heads hold their partition's lane: recorded runs wait behind them, and a
        # redelivery of runs that are recorded but not started starts nothing either.
        assert HEADS.acquire(timeout=10) and HEADS.acquire(timeout=10)
        fake.wait_committed({p0: 6, p1: 5})
        since = len(fake.commits)
        fake.redeliver()
        fake.wait_committed({p0: 6, p1: 5}, since)
        assert FINISHED == []  # two workers are free, yet nothing behind a head ran
        GATE.set()
        for (_, offset), wid in ids.items():
            assert kengine.retrieve(wid).result(timeout=10) == offset
        # A redelivery of finished runs starts nothing.
        since = len(fake.commits)
        fake.redeliver()
        fake.wait_committed({p0: 6, p1: 5}, since)
    assert violations == []
    assert [o for p, o in FINISHED if p == 0] == list(range(6))
    assert [o for p, o in FINISHED if p == 1] == list(range(5))
    assert PEAK == {0: 1, 1: 1}  # one run of a partition at a time
    assert CALLS == {key: 1 for key in ids}  # one execution per message, duplicates included
    runs = kengine.journal.list_workflows(name="cl_flow", limit=100)
    assert sorted(r.workflow_id for r in runs) == sorted(ids.values())
    assert {r.status for r in runs} == {Status.SUCCESS}
    record = kengine.journal.get_workflow(ids[(1, 3)])
    assert record is not None and codec.decode(record.output) == 3


def test_recorded_runs_pause_fetching_until_they_finish(
        kengine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer, "MAX_IN_FLIGHT", 3)
    p0 = (WF_TOPIC, 0)
    fake = FakeSource({p0: messages(WF_TOPIC, 0, [b"x"] * 8)}, batch=4)
    with running(kengine, cl_flow, fake):
        assert HEADS.acquire(timeout=10)
        wait_until(lambda: ("pause", True) in fake.events, what="the loop to pause fetching")
        polled = [e for e in fake.events if e[0] == "poll"]
        assert polled == [("poll", [(0, o) for o in range(4)])]  # nothing more while paused
        GATE.set()
        fake.wait_committed({p0: 8})
        for offset in range(8):
            wid = message_key(WF_GROUP, WF_TOPIC, 0, offset)
            assert kengine.retrieve(wid).result(timeout=10) == offset
    names = [e for e in fake.events if e[0] in ("poll", "pause")]
    assert names.index(("pause", True)) < names.index(("pause", False)) < \
        names.index(("poll", [(0, o) for o in range(4, 8)]))


# -- journal failures rewind ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["transaction", "workflow"])
@pytest.mark.parametrize("when", ["before", "after"])
def test_journal_error_rewinds_to_the_batch_start(
        kengine: Engine, journal_path: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, path: str, when: str) -> None:
    """The journal fails once on the second batch, before writing it or (as far as the loop
    can tell) after: the loop rewinds to that batch's start, commits nothing of it, warns, and
    after the retry every message is applied once."""
    topic, group = (TX_TOPIC, TX_GROUP) if path == "transaction" else (PLAIN_TOPIC, PLAIN_GROUP)
    handler = cl_apply if path == "transaction" else cl_plain
    target: Any = kengine.runtime.txstore if path == "transaction" else kengine.journal
    method = "apply_keyed" if path == "transaction" else "create_workflows"
    p0, p1 = (topic, 0), (topic, 1)
    fake = FakeSource({p0: messages(topic, 0, [b"a"] * 6),
                       p1: messages(topic, 1, [b"b"] * 6)}, batch=4)
    violations: list[str] = []
    fake.on_commit = durability_check(journal_path, group, path == "transaction", violations)
    real = getattr(target, method)
    calls = Counter[str]()

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name.startswith("eoflow-kafka"):
            calls["loop"] += 1
            if calls["loop"] == 2:
                if when == "after":
                    real(*args, **kwargs)
                fake.events.append(("journal-error", None))
                raise JournalError(journal_path, "disk I/O error (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, method, flaky)
    with running(kengine, handler, fake):
        fake.wait_committed({p0: 6, p1: 6})
    second = ("poll", [(0, 4), (0, 5), (1, 0), (1, 1)])
    at = fake.events.index(("journal-error", None))
    assert fake.events[at - 1:at + 4] == [
        second, ("journal-error", None), ("rewind", {p0: 4, p1: 0}), second,
        ("commit", {p0: 6, p1: 2}),
    ]
    assert fake.rewinds == [{p0: 4, p1: 0}]
    assert fake.commits[:2] == [{p0: 4}, {p0: 6, p1: 2}]  # never past a failed batch
    assert violations == []
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "eoflow.kafka" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "the journal could not record a batch" in warnings[0]
    assert "rewinding; retrying in 0.5s" in warnings[0]
    everything = [(p, o) for p in (0, 1) for o in range(6)]
    if path == "transaction":
        assert sorted(ledger(kengine)) == everything
    else:
        for p, o in everything:
            wid = message_key(group, topic, p, o)
            assert kengine.retrieve(wid).result(timeout=10) == o * 10
        assert len(kengine.journal.list_workflows(name="cl_plain", limit=100)) == 12
    assert CALLS == {key: 1 for key in everything}


# -- poison messages ------------------------------------------------------------------------


def test_poison_message_is_retried_then_quarantined(kengine: Engine, journal_path: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    p0, p1 = (POISON_TOPIC, 0), (POISON_TOPIC, 1)
    values = [b"ok0", b"ok1", b"poison", b"ok3", b"ok4", b"ok5"]
    fake = FakeSource({p0: messages(POISON_TOPIC, 0, values),
                       p1: messages(POISON_TOPIC, 1, [b"fine"] * 3)})
    with running(kengine, cl_poison, fake):
        fake.wait_committed({p0: 6, p1: 3})
    key = message_key(POISON_GROUP, POISON_TOPIC, 0, 2)
    record = kengine.journal.get_quarantined(key)
    assert record is not None
    assert (record.status, record.attempts, record.handler) == ("QUARANTINED", 3, "cl_poison")
    assert (record.topic, record.partition, record.offset) == (POISON_TOPIC, 0, 2)
    assert (record.value, record.message_key, record.timestamp_ms) == (
        b"poison", b"k2", 1_700_000_000_002)
    assert "cannot parse offset 2" in record.error
    # Three attempts, and the rest of its partition waits for the verdict (offset order). The
    # batch was first tried at once, then (rolled back) message by message: the handlers of
    # the messages before the poison ran twice, their SQL once (the ledger below).
    assert [o for p, o in CALL_LOG if p == 0] == [0, 1, 2, 0, 1, 2, 2, 2, 3, 4, 5]
    assert CALLS[(0, 2)] == 4 and CALLS[(0, 0)] == CALLS[(0, 1)] == 2
    assert all(n == 1 for k, n in CALLS.items() if k not in ((0, 0), (0, 1), (0, 2)))
    assert sorted(ledger(kengine)) == [(0, 0), (0, 1), (0, 3), (0, 4), (0, 5),
                                       (1, 0), (1, 1), (1, 2)]
    keys = {r[0] for r in committed_rows(journal_path, "SELECT key FROM eoflow_kafka_keys")}
    assert key not in keys and len(keys) == 8
    assert fake.commits == [{p0: 6, p1: 3}]  # the offsets moved past it
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(f"message {key} quarantined after 3 attempts" in e for e in errors)
    attempts = [r.getMessage() for r in caplog.records if "failed (attempt" in r.getMessage()]
    assert len(attempts) == 2


# -- rebalances -----------------------------------------------------------------------------


def test_revoked_partitions_uncommitted_offsets_are_dropped(
        kengine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """Commits fail (a rebalance is under way), then p0 moves to another member: its offsets
    are never committed by this one; p1's are. When p0 comes back it is read again from its
    committed offset, and nothing is applied twice."""
    p0, p1 = (TX_TOPIC, 0), (TX_TOPIC, 1)
    fake = FakeSource({p0: messages(TX_TOPIC, 0, [b"a"] * 3),
                       p1: messages(TX_TOPIC, 1, [b"b"] * 3)})
    fake.commit_errors = [OffsetCommitError("cl", "the group is rebalancing")] * 2

    def rebalance(poll: int) -> None:
        if poll == 2:  # kafka-python calls the listener inside poll
            fake.revoke([p0])

    fake.before_poll = rebalance
    with running(kengine, cl_apply, fake) as loop:
        fake.wait_committed({p1: 3})
        assert loop.assigned == {p1} and loop.revocations == 1
        assert fake.commit_attempts == [
            ({p0: 3, p1: 3}, frozenset({p0, p1})),
            ({p0: 3, p1: 3}, frozenset({p0, p1})),
            ({p1: 3}, frozenset({p1})),
        ]
        fake.assign([p0])  # the partition comes back, from its (absent) committed offset
        fake.wait_committed({p0: 3})
        assert loop.assigned == {p0, p1}
    for offsets, owned in fake.commit_attempts:
        assert set(offsets) <= owned, f"committed {offsets} while owning only {set(owned)}"
    assert sorted(ledger(kengine)) == [(p, o) for p in (0, 1) for o in range(3)]
    assert set(CALLS.values()) == {1}
    assert len([r for r in caplog.records if "will retry" in r.getMessage()]) == 2


# -- backoff --------------------------------------------------------------------------------


def test_poll_failures_back_off_exponentially(kengine: Engine,
                                              caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeSource({(TX_TOPIC, 0): []})
    fake.poll_script = [KafkaConsumeError("fake:1", "no broker reachable")] * 50
    with running(kengine, cl_apply, fake):
        wait_until(lambda: len(retry_delays(caplog)) >= 2, 5, "two retries")
    assert retry_delays(caplog)[:2] == [0.5, 1.0]
    assert "kafka fake:1: no broker reachable; retrying in 0.5s" in caplog.messages
    assert fake.commits == []


def test_backoff_doubles_and_resets_after_a_good_poll(
        kengine: Engine, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    class QuickBackoff(Backoff):  # the loop's own Backoff (its factor), from 0.1 s, not 0.5 s
        def __init__(self, first: float = 0.1, cap: float = 30.0) -> None:
            super().__init__(first, cap)

    monkeypatch.setattr(consumer, "Backoff", QuickBackoff)
    down = KafkaConsumeError("fake:1", "broker down")
    fake = FakeSource({(TX_TOPIC, 0): messages(TX_TOPIC, 0, [b"a"])})
    fake.poll_script = [down, down, down, None, down]
    with running(kengine, cl_apply, fake):
        wait_until(lambda: len(retry_delays(caplog)) >= 4, 5, "four retries")
        fake.wait_committed({(TX_TOPIC, 0): 1})
    assert retry_delays(caplog) == [0.1, 0.2, 0.4, 0.1]
    assert ledger(kengine) == [(0, 0)]


def test_any_error_while_recording_a_batch_rewinds_it(
        kengine: Engine, journal_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only a JournalError: whatever escapes while a batch is recorded (an exception a
    handler raised after SQLite had already ended the transaction, a bug), the batch comes
    back. Skipping it would commit offsets past messages never applied."""
    p0 = (TX_TOPIC, 0)
    fake = FakeSource({p0: messages(TX_TOPIC, 0, [b"a"] * 6)}, batch=3)
    target = kengine.runtime.txstore
    real = target.apply_keyed
    calls = Counter[str]()

    def broken_once(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name.startswith("eoflow-kafka"):
            calls["loop"] += 1
            if calls["loop"] == 1:
                raise RuntimeError("the handler's own error, after SQLite rolled back")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, "apply_keyed", broken_once)
    with running(kengine, cl_apply, fake):
        fake.wait_committed({p0: 6})
    assert fake.rewinds[0] == {p0: 0}
    assert sorted(ledger(kengine)) == [(0, o) for o in range(6)]


BAD_TOPIC, BAD_GROUP = "cl-bad", "cl-g-bad"


@kafka_consume(BAD_TOPIC, group_id=BAD_GROUP, max_attempts=3, retry_interval=0.05)
@transaction()
def cl_bad(topic: str, partition: int, message: KafkaMessage) -> None:
    note_call(partition, message.offset)
    if (message.value or b"").startswith(b"bad"):
        raise ValueError(f"bad message at {message.offset}")


def test_each_poison_message_retries_from_retry_interval(
        kengine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four bad messages then a good one: each bad message waits 0.05 s then 0.1 s between
    its attempts, instead of paying for the ones before it (0.05, 0.1, 0.2 ... 30 s)."""
    waits: list[float] = []
    real = applying.backoff.delay

    def recorded(first: float, factor: float, cap: float, attempt: int) -> float:
        waits.append(real(first, factor, cap, attempt))
        return waits[-1]

    monkeypatch.setattr(applying.backoff, "delay", recorded)
    p0 = (BAD_TOPIC, 0)
    fake = FakeSource({p0: messages(BAD_TOPIC, 0, [b"bad"] * 4 + [b"good"])})
    with running(kengine, cl_bad, fake):
        fake.wait_committed({p0: 5})
    assert waits == [0.05, 0.1] * 4
    assert [kengine.journal.get_quarantined(message_key(BAD_GROUP, BAD_TOPIC, 0, o)) is not None
            for o in range(5)] == [True, True, True, True, False]


EXIT_TOPIC, EXIT_GROUP = "cl-exit", "cl-g-exit"


@kafka_consume(EXIT_TOPIC, group_id=EXIT_GROUP, max_attempts=2, retry_interval=0.01)
@transaction()
def cl_exits(topic: str, partition: int, message: KafkaMessage) -> None:
    note_call(partition, message.offset)
    if message.value == b"exit":
        raise SystemExit(3)
    eoflow.db().execute("INSERT INTO cl_ledger(partition, offset, value) VALUES (?, ?, ?)",
                        (partition, message.offset, message.value))


def test_a_handler_raising_system_exit_is_retried_then_quarantined(kengine: Engine) -> None:
    p0 = (EXIT_TOPIC, 0)
    fake = FakeSource({p0: messages(EXIT_TOPIC, 0, [b"ok", b"exit", b"ok"])})
    with running(kengine, cl_exits, fake) as loop:
        fake.wait_committed({p0: 3})
        assert loop._thread.is_alive()  # the consumer lives on
    record = kengine.journal.get_quarantined(message_key(EXIT_GROUP, EXIT_TOPIC, 0, 1))
    assert record is not None and "raised SystemExit(3)" in record.error
    assert sorted(ledger(kengine)) == [(0, 0), (0, 2)]


SLOW_TOPIC, SLOW_GROUP = "cl-slow", "cl-g-slow"


@kafka_consume(SLOW_TOPIC, group_id=SLOW_GROUP)
@transaction()
def cl_slow(topic: str, partition: int, message: KafkaMessage) -> None:
    threading.Event().wait(0.02)  # a slow handler: 20 ms a message
    eoflow.db().execute("INSERT INTO cl_ledger(partition, offset, value) VALUES (?, ?, ?)",
                        (partition, message.offset, message.value))


def test_slow_handlers_leave_the_writer_to_others_between_transactions(
        kengine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """30 messages of 20 ms: not one 600 ms transaction that starves every other writer, but
    transactions of about TX_BATCH_BUDGET (50 ms), with other writes between them."""
    spans: list[float] = []
    real = kengine.runtime.txstore.apply_keyed

    def timed(*args: Any, **kwargs: Any) -> Any:
        import time

        started = time.monotonic()
        try:
            return real(*args, **kwargs)
        finally:
            spans.append(time.monotonic() - started)

    monkeypatch.setattr(kengine.runtime.txstore, "apply_keyed", timed)
    p0 = (SLOW_TOPIC, 0)
    fake = FakeSource({p0: messages(SLOW_TOPIC, 0, [b"s"] * 30)}, batch=30)
    with running(kengine, cl_slow, fake):
        fake.wait_committed({p0: 30})
    assert sorted(ledger(kengine)) == [(0, o) for o in range(30)]
    assert len(spans) >= 6 and max(spans) < 0.3, spans


def test_a_recreated_topic_stops_its_consumer_until_an_operator_restarts_it(
        kengine: Engine, journal_path: str, caplog: pytest.LogCaptureFixture) -> None:
    """Offsets that go backwards are never skipped in silence: a topic whose broker id changed
    (deleted and created again, or a broker that lost its data) starts from offset 0 again,
    and its new messages would have the keys of old ones."""
    from eoflow.journal import admin

    p0 = (TX_TOPIC, 0)
    first = FakeSource({p0: messages(TX_TOPIC, 0, [b"old"] * 3)})
    first.topic_ids[TX_TOPIC] = "id-1"
    with running(kengine, cl_apply, first):
        first.wait_committed({p0: 3})
    # The topic is recreated: three new messages at offsets 0, 1, 2 again.
    second = FakeSource({p0: messages(TX_TOPIC, 0, [b"new"] * 3)})
    second.topic_ids[TX_TOPIC] = "id-2"
    with running(kengine, cl_apply, second) as loop:
        wait_until(lambda: not loop._thread.is_alive(), what="the consumer to stop")
    assert second.commits == [] and sorted(ledger(kengine)) == [(0, 0), (0, 1), (0, 2)]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(f"topic {TX_TOPIC!r} was recreated" in e and "restart-topic" in e
               for e in errors)
    assert admin.restart_topic(journal_path, TX_GROUP, TX_TOPIC) == 1
    third = FakeSource({p0: messages(TX_TOPIC, 0, [b"new"] * 3)})
    third.topic_ids[TX_TOPIC] = "id-2"
    with running(kengine, cl_apply, third):
        third.wait_committed({p0: 3})
    rows = committer(kengine).read(lambda conn: conn.execute(
        "SELECT value FROM cl_ledger ORDER BY rowid").fetchall())
    assert [bytes(r[0]) for r in rows] == [b"old"] * 3 + [b"new"] * 3
    assert kengine.journal.kafka_topic(TX_GROUP, TX_TOPIC) == ("id-2", 1)


FIX_TOPIC, FIX_GROUP = "cl-fix", "cl-g-fix"
BROKEN = {"yes": True}


@kafka_consume(FIX_TOPIC, group_id=FIX_GROUP, max_attempts=1)
@transaction()
def cl_fixable(topic: str, partition: int, message: KafkaMessage) -> None:
    if BROKEN["yes"] and message.value == b"odd":
        raise ValueError("not handled yet")
    eoflow.db().execute("INSERT INTO cl_ledger(partition, offset, value) VALUES (?, ?, ?)",
                        (partition, message.offset, message.value))


def test_quarantine_retry_all_of_a_handler_applies_each_once(kengine: Engine,
                                                             journal_path: str) -> None:
    from click.testing import CliRunner

    from eoflow.cli.main import cli

    BROKEN["yes"] = True
    p0 = (FIX_TOPIC, 0)
    fake = FakeSource({p0: messages(FIX_TOPIC, 0, [b"even", b"odd", b"even", b"odd"])})
    with running(kengine, cl_fixable, fake):
        fake.wait_committed({p0: 4})
        assert sorted(ledger(kengine)) == [(0, 0), (0, 2)]
        BROKEN["yes"] = False  # the fix
        runner = CliRunner()
        refused = runner.invoke(cli, ["quarantine", "retry", "--journal", journal_path])
        assert refused.exit_code == 2 and "give a KEY, or --all" in refused.output
        done = runner.invoke(cli, ["quarantine", "retry", "--handler", "cl_fixable",
                                   "--journal", journal_path])
        assert done.exit_code == 0 and "retry of 2 message(s)" in done.output
        wait_until(lambda: len(ledger(kengine)) == 4, what="the retried messages")
        keys = [message_key(FIX_GROUP, FIX_TOPIC, 0, o) for o in (1, 3)]
        wait_until(lambda: all(getattr(kengine.journal.get_quarantined(k), "status", "")
                               == "RETRIED" for k in keys), what="both marked RETRIED")
        again = runner.invoke(cli, ["quarantine", "retry", "--all", "--journal", journal_path])
        assert "retry of 0 message(s)" in again.output  # none left quarantined
    assert sorted(ledger(kengine)) == [(0, 0), (0, 1), (0, 2), (0, 3)]


def test_the_watchdog_reports_a_consumer_stuck_inside_the_client(
        kengine: Engine, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """kafka-python can spin inside poll() for ever (a record it cannot decode, before eoflow
    learned to skip those): a loop that stops coming back is reported, not left silent."""
    from eoflow.engine.kafka import start

    p0 = (TX_TOPIC, 0)
    fake = FakeSource({p0: messages(TX_TOPIC, 0, [b"a"])})
    stuck = threading.Event()
    real_poll = fake.poll

    def poll(timeout_ms: int, max_records: int) -> list[KafkaMessage]:
        if fake.polls >= 1:
            stuck.wait(10)  # inside the client, not coming back
        return real_poll(timeout_ms, max_records)

    fake.poll = poll  # type: ignore[method-assign]
    monkeypatch.setattr(start, "STALL", 0.8)
    caplog.set_level(logging.INFO, logger="eoflow.kafka")
    with running(kengine, cl_apply, fake) as loop:
        watchdog = start.Watchdog([loop], every=0.05)
        watchdog.start()
        try:
            wait_until(lambda: any("no progress" in r.getMessage() for r in caplog.records),
                       what="the watchdog's report")
            stuck.set()
            wait_until(lambda: any("making progress again" in r.getMessage()
                                   for r in caplog.records), what="the all-clear")
        finally:
            stuck.set()
            watchdog.stop()
    reports = [r for r in caplog.records if "no progress" in r.getMessage()]
    assert len(reports) == 1 and reports[0].levelno == logging.ERROR
    assert TX_GROUP in reports[0].getMessage()


# -- the journal's marks: never below them again --------------------------------------------


def test_messages_at_or_below_the_mark_are_never_handled_again_even_without_keys(
        kengine: Engine, journal_path: str) -> None:
    """Retention forgets keys below a partition's mark; a redelivery (Kafka expired the
    group's offsets, say) must then apply nothing again: the loop seeks past the mark."""
    p0, p1 = (TX_TOPIC, 0), (TX_TOPIC, 1)
    fake = FakeSource({p0: messages(TX_TOPIC, 0, [b"a"] * 9),
                       p1: messages(TX_TOPIC, 1, [b"b"] * 5)}, batch=4)
    with running(kengine, cl_apply, fake):
        fake.wait_committed({p0: 9, p1: 5})
        wait_until(lambda: committed_rows(
            journal_path, "SELECT partition, offset FROM eoflow_kafka_offsets "
                          "ORDER BY partition") == [(0, 8), (1, 4)])
        committer(kengine).write(lambda conn: conn.execute("DELETE FROM eoflow_kafka_keys"))
        since = len(fake.commits)
        fake.redeliver()
        fake.wait_committed({p0: 9, p1: 5}, since)
        fake.logs[p0].extend(messages(TX_TOPIC, 0, [b"c"] * 12)[9:])  # new messages go on
        fake.wait_committed({p0: 12, p1: 5}, since)
    assert sorted(ledger(kengine)) == sorted([(0, o) for o in range(12)] +
                                             [(1, o) for o in range(5)])
    assert set(CALLS.values()) == {1}
    seeks: dict[Partition, int] = {}
    for kind, value in fake.events:
        if kind == "rewind":
            seeks.update(value)
    assert seeks == {p0: 9, p1: 5}  # straight past the marks
    assert all(o <= 12 for c in fake.commits[since:] for o in c.values())
    assert all(c.get(p0, 9) >= 9 and c.get(p1, 5) >= 5 for c in fake.commits[since:]), \
        "Kafka's committed offset went back below the mark"


def test_keys_still_deduplicate_above_a_lagging_mark(kengine: Engine,
                                                     journal_path: str) -> None:
    """A crash between recording a batch and noting its mark: the keys cover the gap."""
    p0 = (TX_TOPIC, 0)
    fake = FakeSource({p0: messages(TX_TOPIC, 0, [b"a"] * 6)}, batch=3)
    with running(kengine, cl_apply, fake) as loop:
        fake.wait_committed({p0: 6})
        wait_until(lambda: committed_rows(
            journal_path, "SELECT offset FROM eoflow_kafka_offsets") == [(5,)])
        committer(kengine).write(lambda conn: conn.execute(
            "UPDATE eoflow_kafka_offsets SET offset = 2"))
        loop._recheck = True  # as after an assignment: the marks are read again
        since = len(fake.commits)
        fake.redeliver()
        fake.wait_committed({p0: 6}, since)
    assert sorted(ledger(kengine)) == [(0, o) for o in range(6)]
    assert set(CALLS.values()) == {1} and len(CALLS) == 6

"""A partition that moves to this engine while runs of its lane belong to a dead executor: its
new runs wait (LaneGate) until those runs are taken over AND queued here, never in between, so
that a new run cannot overtake an older one of its partition (kafka/lanes.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from eoflow import Engine, KafkaMessage, workflow
from eoflow.engine.kafka.defs import ConsumerSpec
from eoflow.engine.kafka.lanes import LaneGate, lane_of
from eoflow.engine.registry import definition_of
from eoflow.journal import codec
from eoflow.journal.records import NewWorkflow

from .fakes import messages, wait_until

TOPIC, GROUP = "lg-topic", "lg-group"
ORDER: list[int] = []


@workflow()
def lg_flow(topic: str, partition: int, message: KafkaMessage) -> int:
    ORDER.append(message.offset)
    return message.offset


@pytest.fixture
def engine(journal_path: str) -> Iterator[Engine]:
    opened = Engine(journal=journal_path, workers=2, grace_period=2)
    yield opened
    opened.close()


def test_a_new_run_waits_until_the_runs_taken_over_are_queued(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = engine.runtime
    spec = ConsumerSpec(definition_of(lg_flow), (TOPIC,), GROUP)
    old, new = messages(TOPIC, 0, [b"old", b"new"])
    lane = lane_of(spec, old)
    # Between its claim and queueing what it claimed, the takeover writes to the journal
    # (note_recoveries): it is held there, with the runs already this engine's.
    claimed, go_on = threading.Event(), threading.Event()
    note = rt.journal.note_recoveries

    def held_note(*args: Any) -> Any:
        claimed.set()
        assert go_on.wait(10)
        return note(*args)

    monkeypatch.setattr(rt.journal, "note_recoveries", held_note)
    # A dead engine's run of the lane (on SQLite, any other executor is dead: the file is
    # locked by this one); the engine's lease keeper takes it over within a second.
    inputs = codec.encode({"args": [TOPIC, 0, old], "kwargs": {}})
    rt.journal.create_workflows([NewWorkflow("lg-old", "lg_flow", inputs, 1, lane=lane)], 1)

    def hand_to_ghost(conn: Any) -> None:
        conn.execute("INSERT INTO eoflow_executors (executor_id, host, pid, started_ms, "
                     "heartbeat_ms, lease_ms, status) VALUES ('ghost', 'h', 1, 1, 1, 1000, "
                     "'ALIVE')")
        conn.execute("UPDATE eoflow_workflows SET executor_id = 'ghost'")

    rt.journal.committer.write(hand_to_ghost)
    assert claimed.wait(10), "the lease keeper never took the dead engine's run over"
    assert rt.journal.foreign_lane_runs(lane) == 0  # claimed: this engine's, not queued yet
    passed = threading.Event()
    gate = LaneGate(rt, spec, threading.Event())
    waiter = threading.Thread(target=lambda: (gate.wait([new]), passed.set()))
    waiter.start()
    try:
        assert not passed.wait(0.6), "the gate let a new run go before the claimed one queued"
    finally:
        go_on.set()
    wait_until(passed.is_set, 10, "the gate")
    waiter.join(5)
    wait_until(lambda: ORDER == [0], 10, "the run taken over")


TAKEN: list[int] = []


@workflow()
def lg_taken(topic: str, partition: int, message: KafkaMessage) -> int:
    TAKEN.append(message.offset)
    return message.offset


@workflow()
def lg_plain() -> int:
    return 7


@pytest.fixture
def two_executors(pg_url: str) -> Iterator[tuple[Any, Any, Callable[[Any, int], None], str]]:
    """A live executor and a dead one (its lease ran out an hour ago) on a PostgreSQL journal,
    and `record(journal, offset)`: the run of partition 1's message at `offset`, recorded by
    that executor. Runs are created in the order they are recorded."""
    from eoflow.journal.postgres import PostgresJournal

    spec = ConsumerSpec(definition_of(lg_taken), (TOPIC,), GROUP)
    log = messages(TOPIC, 1, [b"m"] * 4)
    lane = lane_of(spec, log[0])

    def record(journal: Any, offset: int) -> None:
        inputs = codec.encode({"args": [TOPIC, 1, log[offset]], "kwargs": {}})
        journal.create_workflows([NewWorkflow(f"lt-{offset}", "lg_taken", inputs, 1,
                                              lane=lane)], time_ms())

    alive, dead = PostgresJournal.open(pg_url), PostgresJournal.open(pg_url)
    alive.register_executor(lease_ms=600_000, now_ms=time_ms())
    # Not a 1 ms lease: the server would end the dead one's session whenever it idled 1 ms
    # between two statements of a transaction (its idle timeout is its lease; seen in CI).
    dead.register_executor(lease_ms=60_000, now_ms=time_ms() - 3_600_000)
    TAKEN.clear()
    try:
        yield alive, dead, record, lane
    finally:
        alive.close()
        dead.close()


def finish(journal: Any, workflow_id: str) -> None:
    from eoflow.journal.records import Status

    done = threading.Event()
    journal.finish_workflow(workflow_id, Status.SUCCESS, "0", None, time_ms(),
                            on_durable=lambda error, applied: done.set(), urgent=True)
    assert done.wait(5)


def test_runs_taken_over_wait_for_older_runs_of_their_lane_held_elsewhere(
        two_executors: tuple[Any, Any, Callable[[Any, int], None], str], pg_url: str,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A partition's oldest run is PENDING under a live engine (still running it) while its
    newer runs belong to a dead one (recorded while it waited for the first): the engine
    that takes the dead one's runs over must not run them before the older one is done, and
    no worker thread waits with them. While they wait, a warning says so now and then."""
    from eoflow.engine import heldlanes

    monkeypatch.setattr(heldlanes, "WARN_EVERY", 0.3)
    alive, dead, record, lane = two_executors
    record(alive, 0)
    record(dead, 1)
    record(dead, 2)
    with Engine(journal=pg_url, workers=1, grace_period=2) as engine:
        wait_until(lambda: engine.runtime.journal.foreign_lane_runs(lane) == 1, 10,
                   "the dead engine's runs to be taken over")
        assert engine.start(lg_plain).result(timeout=5) == 7  # the only worker is free
        time.sleep(0.6)
        assert TAKEN == [], "a run taken over overtook an older run of its lane"
        assert any("still wait for 1 older run" in r.getMessage() for r in caplog.records)
        finish(alive, "lt-0")
        wait_until(lambda: TAKEN == [1, 2], 10, "the runs taken over, in order")


@pytest.mark.parametrize("cancelled_first", [False, True])
def test_a_held_run_resumed_by_an_operator_keeps_its_place(
        two_executors: tuple[Any, Any, Callable[[Any, int], None], str], pg_url: str,
        cancelled_first: bool) -> None:
    """A run held behind an older one elsewhere is resumed (after a cancel, or as it is): it
    stays held, and runs once the older one is done, not at once."""
    alive, dead, record, lane = two_executors
    record(alive, 0)
    record(dead, 1)
    with Engine(journal=pg_url, workers=2, grace_period=2) as engine:
        wait_until(lambda: engine.runtime.held_lanes.count(lane) == 1, 10, "the run, held")
        if cancelled_first:
            engine.cancel("lt-1")
        handle = engine.resume("lt-1")
        time.sleep(0.6)
        assert TAKEN == [], "a resumed run overtook an older run of its lane"
        finish(alive, "lt-0")
        assert handle.result(timeout=10) == 1
        assert TAKEN == [1]


def test_an_older_run_taken_over_later_goes_first(
        two_executors: tuple[Any, Any, Callable[[Any, int], None], str], pg_url: str) -> None:
    """The live owner of the lane's oldest run dies while the newer ones wait: the engine
    takes that run over too and runs it before them."""
    from eoflow.journal.postgres import PostgresJournal

    _, dead, record, _ = two_executors
    dying = PostgresJournal.open(pg_url)
    try:
        dying.register_executor(lease_ms=2500, now_ms=time_ms())  # never renewed
        record(dying, 0)
        record(dead, 1)
        record(dead, 2)
        with Engine(journal=pg_url, workers=2, grace_period=2, lease=1.0):
            wait_until(lambda: len(TAKEN) == 3, 20, "all three runs")
            assert TAKEN == [0, 1, 2]
    finally:
        dying.close()


def test_runs_older_than_the_one_held_elsewhere_do_not_wait(
        two_executors: tuple[Any, Any, Callable[[Any, int], None], str], pg_url: str) -> None:
    """Taken over: the lane's runs 0 and 2; the live engine holds run 1. Run 0 goes on at
    once (the live engine's run waits for it), run 2 waits for run 1."""
    alive, dead, record, _ = two_executors
    record(dead, 0)
    record(alive, 1)
    record(dead, 2)
    with Engine(journal=pg_url, workers=2, grace_period=2):
        wait_until(lambda: TAKEN == [0], 10, "the oldest run")
        time.sleep(0.6)
        assert TAKEN == [0]
        finish(alive, "lt-1")
        wait_until(lambda: TAKEN == [0, 2], 10, "the newest run, after the live one's")


def test_runs_taken_over_run_when_their_order_cannot_be_read_at_once(
        two_executors: tuple[Any, Any, Callable[[Any, int], None], str], pg_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The read of the lanes' order fails right after the claim: the runs are this engine's
    now (no other takes them), so they must still run, once it can be read."""
    from eoflow.errors import JournalError
    from eoflow.journal.postgres import PostgresJournal

    _, dead, record, _ = two_executors
    record(dead, 0)
    record(dead, 1)
    real, calls = PostgresJournal.pending_lane_order, []

    def flaky(self: Any, lanes: Sequence[str]) -> list[tuple[str, str, bool]]:
        calls.append(1)
        if len(calls) == 1:
            raise JournalError("journal", "is away for a moment")
        return real(self, lanes)

    monkeypatch.setattr(PostgresJournal, "pending_lane_order", flaky)
    with Engine(journal=pg_url, workers=2, grace_period=2):
        wait_until(lambda: TAKEN == [0, 1], 10, "the runs taken over, in order")
    assert len(calls) >= 2


def test_runs_held_behind_an_older_one_hold_new_runs_back_too(
        two_executors: tuple[Any, Any, Callable[[Any, int], None], str], pg_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The dead engine's run, taken over behind the live one's older run, is held (not
    queued). The partition's new runs (the lane gate) wait for it too, not only for the
    live one's: they go once it is queued."""
    from eoflow.errors import JournalError

    alive, dead, record, lane = two_executors
    record(alive, 0)
    record(dead, 1)
    with Engine(journal=pg_url, workers=2, grace_period=2) as engine:
        rt = engine.runtime
        wait_until(lambda: rt.held_lanes.count(lane) == 1, 10, "the dead one's run, held")
        real = rt.journal.pending_lane_order

        def away(lanes: Sequence[str]) -> list[tuple[str, str, bool]]:
            raise JournalError("journal", "is away for a moment")

        monkeypatch.setattr(rt.journal, "pending_lane_order", away)  # held, for now
        passed = threading.Event()
        gate = LaneGate(rt, ConsumerSpec(definition_of(lg_taken), (TOPIC,), GROUP),
                        threading.Event())
        waiter = threading.Thread(
            target=lambda: (gate.wait(messages(TOPIC, 1, [b"m"] * 3)[2:]), passed.set()))
        waiter.start()
        finish(alive, "lt-0")
        try:
            assert not passed.wait(0.8), "the gate let a new run go before the held one"
            assert TAKEN == []
        finally:
            monkeypatch.setattr(rt.journal, "pending_lane_order", real)
        wait_until(passed.is_set, 10, "the gate")
        waiter.join(5)
        wait_until(lambda: TAKEN == [1], 10, "the run taken over")


def time_ms() -> int:
    return int(time.time() * 1000)

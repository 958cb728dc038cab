"""A partition that moves to this engine while runs of its lane belong to a dead executor: its
new runs wait (LaneGate) until those runs are taken over AND queued here, never in between, so
that a new run cannot overtake an older one of its partition (kafka/lanes.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
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


def test_runs_taken_over_wait_for_older_runs_of_their_lane_held_elsewhere(pg_url: str) -> None:
    """A partition's oldest run is PENDING under a live engine (still running it) while its
    newer runs belong to a dead one (recorded while it waited for the first): the engine
    that takes the dead one's runs over must not run them before the older one is done."""
    from eoflow.journal.postgres import PostgresJournal
    from eoflow.journal.records import Status

    spec = ConsumerSpec(definition_of(lg_taken), (TOPIC,), GROUP)
    log = messages(TOPIC, 1, [b"first", b"second", b"third"])
    lane = lane_of(spec, log[0])

    def run_of(message: KafkaMessage) -> NewWorkflow:
        inputs = codec.encode({"args": [TOPIC, 1, message], "kwargs": {}})
        return NewWorkflow(f"lt-{message.offset}", "lg_taken", inputs, 1, lane=lane)

    alive, dead = PostgresJournal.open(pg_url), PostgresJournal.open(pg_url)
    try:
        alive.register_executor(lease_ms=600_000, now_ms=time_ms())
        alive.create_workflows([run_of(log[0])], time_ms())
        dead.register_executor(lease_ms=1, now_ms=time_ms())  # its lease ran out at once
        dead.create_workflows([run_of(m) for m in log[1:]], time_ms())
        TAKEN.clear()
        with Engine(journal=pg_url, workers=2, grace_period=2) as engine:
            wait_until(lambda: engine.runtime.journal.foreign_lane_runs(lane) == 1, 10,
                       "the dead engine's runs to be taken over")
            time.sleep(1.0)
            assert TAKEN == [], "a run taken over overtook an older run of its lane"
            alive.finish_workflow("lt-0", Status.SUCCESS, "0", None, time_ms(), urgent=True)
            wait_until(lambda: TAKEN == [1, 2], 10, "the runs taken over, in order")
    finally:
        alive.close()
        dead.close()


def time_ms() -> int:
    return int(time.time() * 1000)

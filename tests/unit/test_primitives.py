"""Durable sleep, messages, events and child workflows, on an injected clock (no real waits)."""

from __future__ import annotations

import threading

import pytest

import eoflow
from eoflow import Engine, Status, step, transaction, workflow
from eoflow.engine.clock import FakeClock, ManualClock
from eoflow.errors import (
    ConfigError,
    ContextError,
    SerializationError,
    WorkflowCancelledError,
    WorkflowNotFoundError,
)
from eoflow.journal import codec
from eoflow.journal.records import NewWorkflow

BACKENDS = ("sqlite", "postgres")  # each test that takes a journal runs on both

SEEN: list[object] = []


@step()
def p_now() -> int:
    return eoflow.Engine.current().clock.now_ms()


@workflow()
def p_sleeper(seconds: float) -> tuple[int, int]:
    before = p_now()
    eoflow.sleep(seconds)
    return before, p_now()


@workflow()
def p_receiver(topic: str | None, timeout: float) -> list[object]:
    got = [eoflow.recv(topic, timeout=timeout), eoflow.recv(topic, timeout=timeout)]
    SEEN.append(got)
    return got


@workflow()
def p_sender(destination: str) -> str:
    eoflow.send(destination, {"n": 1}, topic="jobs")
    eoflow.send(destination, {"n": 2}, topic="jobs")
    return "sent"


@workflow()
def p_publisher(steps: int) -> int:
    for i in range(steps):
        eoflow.set_event("progress", i + 1)
    return steps


@workflow()
def p_waiter(other: str) -> object:
    return eoflow.get_event(other, "progress", timeout=30)


@step()
def p_double(x: int) -> int:
    return x * 2


@workflow()
def p_child(x: int) -> int:
    return p_double(x)


@workflow()
def p_parent(x: int) -> list[int]:
    handle = eoflow.Engine.current().start(p_child, x + 1)
    return [p_child(x), handle.result(timeout=30)]


@workflow()
def p_long_parent() -> int:
    eoflow.Engine.current().start(p_long_child)
    eoflow.sleep(3600)
    return 1


@workflow()
def p_long_child() -> int:
    eoflow.sleep(7200)
    return 2


def test_sleep_wakes_at_the_recorded_time(engine: Engine, clock: FakeClock) -> None:
    before, after = engine.run(p_sleeper, 3600, workflow_id="s1")
    assert after - before >= 3_600_000
    steps = engine.journal.steps_of("s1")
    assert [s.kind.value for s in steps] == ["step", "sleep", "step"]
    assert codec.decode(steps[1].output) == before + 3_600_000  # the wake time, recorded first


@workflow()
def p_quick(x: int) -> int:
    return p_double(x)


def test_long_sleepers_hold_no_worker(journal_path: str) -> None:
    clock = ManualClock()
    with Engine(journal=journal_path, clock=clock, workers=2) as engine:
        sleepers = [engine.start(p_sleeper, 3600 + i) for i in range(20)]
        for _ in range(1000):  # every sleeper has recorded its wake-up time
            if all(len(engine.journal.steps_of(h.workflow_id)) == 2 for h in sleepers):
                break
            threading.Event().wait(0.005)
        # No time has passed, so every sleeper is still asleep: if a sleep held its worker,
        # both workers would be taken and this run could not start.
        assert engine.start(p_quick, 4).result(timeout=10) == 8
        assert all(h.status() is Status.PENDING for h in sleepers)
        clock.advance(3700)
        assert all(len(h.result(timeout=30)) == 2 for h in sleepers)


def test_short_sleep_keeps_its_thread(engine: Engine, clock: FakeClock) -> None:
    before, after = engine.run(p_sleeper, 0.5, workflow_id="short")
    assert after - before == 500
    record = engine.journal.get_workflow("short")
    assert record is not None and record.not_before_ms is None  # never suspended
    engine.run(p_sleeper, 5, workflow_id="long")
    record = engine.journal.get_workflow("long")
    assert record is not None and record.not_before_ms is not None  # suspended, then woken


def test_recv_gets_messages_in_order(journal_path: str) -> None:
    with Engine(journal=journal_path) as engine:  # real clock: recv blocks until notified
        receiver = engine.start(p_receiver, "jobs", 30, workflow_id="r1")
        assert engine.run(p_sender, "r1") == "sent"
        assert receiver.result(timeout=30) == [{"n": 1}, {"n": 2}]
        assert engine.run(p_receiver, "jobs", 30, workflow_id="r1") == [{"n": 1}, {"n": 2}]


def test_recv_times_out_and_journals_it(engine: Engine, clock: FakeClock) -> None:
    lonely = engine.run(p_receiver, "other", 5, workflow_id="r2")
    assert lonely == [None, None]  # both timeouts journaled
    assert [codec.decode(s.output) for s in engine.journal.steps_of("r2")][1::2] == [None, None]
    assert engine.run(p_receiver, "other", 5, workflow_id="r2") == [None, None]  # replay


def test_send_from_outside_a_workflow_and_to_nowhere(engine: Engine) -> None:
    engine.journal.create_workflows([NewWorkflow(
        "r3", "p_receiver", codec.encode({"args": [None, 30], "kwargs": {}}), 1)], 1)
    eoflow.send("r3", "a")  # queued before the receiver runs: delivered when it does
    eoflow.send("r3", b"b")
    assert engine.resume("r3").result(timeout=30) == ["a", b"b"]
    with pytest.raises(WorkflowNotFoundError, match="'nobody'"):
        eoflow.send("nobody", "hello")
    with pytest.raises(SerializationError, match="eoflow.send.*'lock'"):
        eoflow.send("r3", threading.Lock())


def test_recv_and_set_event_need_a_workflow(engine: Engine) -> None:
    with pytest.raises(ContextError, match="recv\\(\\) can only be called inside a @workflow"):
        eoflow.recv()
    with pytest.raises(ContextError, match="set_event"):
        eoflow.set_event("k", 1)
    with pytest.raises(ConfigError, match="timeout must be"):
        eoflow.get_event("x", "k", timeout=-1)


@transaction()
def pr_notify_inside() -> None:
    eoflow.send("pr-nobody", "hello")  # a journal write that waits: not from in here


@workflow()
def pr_sends_from_a_transaction() -> str:
    try:
        pr_notify_inside()
    except ContextError as error:
        return str(error)
    return "sent"


def test_a_journal_write_inside_a_transaction_is_refused_not_a_deadlock(
        engine: Engine) -> None:
    """The body runs inside the journal's open transaction: a write that waited for it would
    wait for ever."""
    said = engine.start(pr_sends_from_a_transaction).result(timeout=10)
    assert "call it from the workflow instead" in said
    with pytest.raises(ContextError, match="@transaction body"):
        pr_notify_inside()  # outside any workflow too
    assert engine.start(pr_publishes_from_a_transaction).result(timeout=10) == "refused"


@transaction()
def pr_publish_inside() -> None:
    eoflow.set_event("k", 1)


@workflow()
def pr_publishes_from_a_transaction() -> str:
    try:
        pr_publish_inside()
    except ContextError:
        return "refused"
    return "published"


def test_events_are_published_and_awaited(journal_path: str) -> None:
    # The real clock: the waiter blocks until notified (the fake one would time out at once).
    with Engine(journal=journal_path) as engine:
        events_round_trip(engine)


def events_round_trip(engine: Engine) -> None:
    assert eoflow.get_event("e1", "progress", timeout=0) is None
    waiter = engine.start(p_waiter, "e1", workflow_id="w1")
    engine.run(p_publisher, 1, workflow_id="e1")
    assert waiter.result(timeout=30) == 1  # the one value published, seen by the waiter
    engine.run(p_publisher, 3, workflow_id="e2")
    assert eoflow.get_event("e2", "progress", timeout=1) == 3  # the latest value wins
    recorded = engine.run(p_waiter, "e1", workflow_id="w1")  # replay returns the same value
    assert recorded == waiter.result()


def test_children_have_deterministic_ids_and_are_reattached(engine: Engine) -> None:
    assert engine.run(p_parent, 5, workflow_id="parent") == [10, 12]
    children = {r.workflow_id: r.parent_id for r in engine.journal.list_workflows(limit=10)
                if r.parent_id}
    assert children == {"parent-1": "parent", "parent-2": "parent"}
    assert engine.run(p_parent, 5, workflow_id="parent") == [10, 12]
    assert len(engine.journal.list_workflows(limit=10)) == 3  # replay started no new child


def test_cancellation_reaches_children(journal_path: str) -> None:
    clock = FakeClock()
    with Engine(journal=journal_path, clock=clock, recover=False) as engine:
        # Suspended sleepers: cancel the parent before the timers fire.
        engine.runtime.timers.stop()
        parent = engine.start(p_long_parent, workflow_id="lp")
        deadline = threading.Event()
        for _ in range(200):
            if engine.journal.get_workflow("lp-1") is not None and \
                    len(engine.journal.steps_of("lp")) == 2:
                break
            deadline.wait(0.01)
        engine.cancel("lp")
        assert engine.retrieve("lp").status() is Status.CANCELLED
        assert engine.retrieve("lp-1").status() is Status.CANCELLED
        with pytest.raises(WorkflowCancelledError):
            parent.result(timeout=5)


@workflow()
def p_two_events() -> int:
    eoflow.set_event("stage", "one")
    p_double(1)
    eoflow.set_event("stage", "two")
    eoflow.set_event("other", 5)
    return p_double(2)


def test_a_fork_starts_with_the_events_of_the_steps_it_reuses(engine: Engine) -> None:
    engine.run(p_two_events, workflow_id="ev")
    assert eoflow.get_event("ev", "stage", timeout=0) == "two"
    # Fork before the second set_event: the fork has published "one", and then runs on.
    early = engine.fork("ev", 3, "ev-early")
    assert eoflow.get_event("ev-early", "stage", timeout=0) in ("one", "two")
    assert early.result(timeout=10) == 4
    # Fork after every set_event: it never publishes again, so it must start with them.
    late = engine.fork("ev", 5, "ev-late")
    assert eoflow.get_event("ev-late", "stage", timeout=0) == "two"
    assert eoflow.get_event("ev-late", "other", timeout=0) == 5
    assert late.result(timeout=10) == 4


def test_a_fork_has_exactly_the_prefix_events(engine: Engine) -> None:
    engine.run(p_two_events, workflow_id="ev2")
    record = engine.journal.fork_workflow("ev2", 3, "ev2-fork", engine.clock.now_ms())
    assert record.status is Status.PENDING  # (created by the journal alone: not run here)
    assert codec.decode(engine.journal.get_event("ev2-fork", "stage")) == "one"
    assert engine.journal.get_event("ev2-fork", "other") is None


@step()
def p_step_publishes(value: int) -> int:
    eoflow.set_event("from-step", value)
    return value


@workflow()
def p_publishes_in_a_step() -> int:
    return p_step_publishes(7)


def test_set_event_from_inside_a_step_is_part_of_that_step(engine: Engine) -> None:
    assert engine.run(p_publishes_in_a_step, workflow_id="sp") == 7
    assert eoflow.get_event("sp", "from-step", timeout=0) == 7
    assert [s.kind.value for s in engine.journal.steps_of("sp")] == ["step"]

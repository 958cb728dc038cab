"""Cancel, resume, timeouts and shutdown: runs stop at step boundaries and lose nothing."""

from __future__ import annotations

import threading

import pytest

from eoflow import Engine, Status, step, workflow
from eoflow.engine.clock import FakeClock
from eoflow.errors import EngineClosedError, WorkflowCancelledError, WorkflowStateError

BACKENDS = ("sqlite", "postgres")  # each test that takes a journal runs on both

GATE = {"event": threading.Event(), "entered": threading.Event()}
DONE: list[int] = []


@step()
def l_wait_at_gate(i: int) -> int:
    GATE["entered"].set()
    GATE["event"].wait(10)
    return i


@step()
def l_after(i: int) -> int:
    DONE.append(i)
    return i * 2


@workflow()
def l_gated(i: int) -> int:
    return l_after(l_wait_at_gate(i))


CLOCK: list[FakeClock] = []


@step()
def l_slow() -> int:
    CLOCK[0].advance(40)
    return 1


@workflow(timeout=60)
def l_timed() -> int:
    return l_slow() + l_slow() + l_slow()


def reset_gate() -> None:
    GATE["event"] = threading.Event()
    GATE["entered"] = threading.Event()
    DONE.clear()


def test_cancel_stops_at_the_next_boundary_and_resume_finishes(engine: Engine) -> None:
    reset_gate()
    handle = engine.start(l_gated, 3, workflow_id="c1")
    assert GATE["entered"].wait(10)
    engine.cancel("c1")
    GATE["event"].set()
    with pytest.raises(WorkflowCancelledError, match="'c1' was cancelled"):
        handle.result(timeout=10)
    assert handle.status() is Status.CANCELLED
    assert DONE == []  # the step after the boundary never ran
    assert engine.resume("c1").result(timeout=10) == 6
    assert DONE == [3]
    assert [s.name for s in engine.journal.steps_of("c1")] == ["l_wait_at_gate", "l_after"]


def test_cancel_or_resume_in_the_wrong_state(engine: Engine) -> None:
    engine.run(l_after_flow, 1, workflow_id="done")
    with pytest.raises(WorkflowStateError, match="cannot cancel workflow 'done'"):
        engine.cancel("done")
    with pytest.raises(WorkflowStateError, match="cannot resume"):
        engine.resume("done")


@workflow()
def l_after_flow(i: int) -> int:
    return l_after(i)


def test_timeout_cancels_as_timed_out(journal_path: str) -> None:
    clock = FakeClock()
    CLOCK[:] = [clock]
    with Engine(journal=journal_path, clock=clock) as engine:
        handle = engine.start(l_timed, workflow_id="t1")
        with pytest.raises(WorkflowCancelledError, match="timed out"):
            handle.result(timeout=10)
        assert handle.status() is Status.CANCELLED
        assert len(engine.journal.steps_of("t1")) == 2  # 0s, 40s ran; at 80s it stopped
        resumed = engine.resume("t1")  # a resumed run gets a fresh deadline
        assert resumed.result(timeout=10) == 3


def test_close_leaves_unfinished_runs_pending_for_the_next_start(journal_path: str) -> None:
    reset_gate()
    engine = Engine(journal=journal_path, grace_period=5)
    handles = [engine.start(l_gated, i, workflow_id=f"g{i}") for i in range(3)]
    assert GATE["entered"].wait(10)
    runs = [engine.runtime.runs.get(f"g{i}") for i in range(3)]
    closer = threading.Thread(target=engine.close)
    closer.start()
    for _ in range(1000):  # open the gate once close has asked the runs to stop
        if all(r is None or r.done.is_set() or getattr(r.context, "stop_reason", None)
               for r in runs):
            break
        threading.Event().wait(0.005)
    GATE["event"].set()
    closer.join(10)
    assert not closer.is_alive()
    for handle in handles:  # their waiters are released: the engine closed under them
        with pytest.raises(EngineClosedError):
            handle.result(timeout=1)
    with Engine(journal=journal_path) as engine:
        assert [engine.retrieve(f"g{i}").result(timeout=10) for i in range(3)] == [0, 2, 4]
        assert engine.journal.count_by_status() == {"SUCCESS": 3}


def test_a_handle_from_before_a_cancel_sees_the_resumed_outcome(engine: Engine) -> None:
    reset_gate()
    handle = engine.start(l_gated, 4, workflow_id="stale")
    assert GATE["entered"].wait(10)
    engine.cancel("stale")
    GATE["event"].set()
    with pytest.raises(WorkflowCancelledError):
        handle.result(timeout=10)
    assert handle.status() is Status.CANCELLED
    assert engine.resume("stale").result(timeout=10) == 8
    assert handle.status() is Status.SUCCESS  # the old handle reflects the journal
    assert handle.result(timeout=10) == 8


def _until_stopping(engine: Engine, wid: str) -> None:
    run = engine.runtime.runs.get(wid)
    for _ in range(2000):
        if run is None or getattr(run.context, "stop_reason", None) is not None:
            return
        threading.Event().wait(0.005)
    raise AssertionError(f"{wid} was never asked to stop")


def test_cancel_then_resume_before_the_boundary_runs_on(engine: Engine) -> None:
    reset_gate()
    handle = engine.start(l_gated, 5, workflow_id="race")
    assert GATE["entered"].wait(10)
    engine.cancel("race")
    resumed = engine.resume("race")  # before the run reached its next step boundary
    GATE["event"].set()
    assert resumed.result(timeout=10) == 10 and handle.result(timeout=10) == 10
    assert engine.retrieve("race").status() is Status.SUCCESS


def test_cancel_resume_cancel_ends_cancelled(engine: Engine) -> None:
    reset_gate()
    handle = engine.start(l_gated, 6, workflow_id="race2")
    assert GATE["entered"].wait(10)
    engine.cancel("race2")
    engine.resume("race2")
    engine.cancel("race2")
    GATE["event"].set()
    with pytest.raises(WorkflowCancelledError):
        handle.result(timeout=10)
    assert engine.journal.get_workflow("race2").status is Status.CANCELLED  # type: ignore[union-attr]


def test_cancel_then_resume_from_the_cli_while_the_run_is_inside_a_step(
        journal_path: str) -> None:
    from eoflow.journal import admin

    reset_gate()
    with Engine(journal=journal_path, grace_period=5) as engine:
        handle = engine.start(l_gated, 7, workflow_id="cli-race")
        assert GATE["entered"].wait(10)
        admin.cancel(journal_path, "cli-race")
        _until_stopping(engine, "cli-race")  # the app has seen the cancel
        admin.resume(journal_path, "cli-race")
        GATE["event"].set()
        assert handle.result(timeout=10) == 14
        assert engine.retrieve("cli-race").status() is Status.SUCCESS

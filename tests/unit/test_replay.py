"""Replay and recovery: recorded steps are reused, never re-run; names are checked."""

from __future__ import annotations

import pytest

from eoflow import Engine, Status, step, workflow
from eoflow.engine.clock import FakeClock
from eoflow.errors import DeterminismError, StepRetriesExhaustedError, WorkflowParkedError
from eoflow.journal import codec
from eoflow.journal.records import NewWorkflow, StepKind, StepRecord

BACKENDS = ("sqlite", "postgres")  # each test that takes a journal runs on both

RAN: list[str] = []
FLAKY = {"left": 0}


@step()
def r_first(x: int) -> int:
    RAN.append("first")
    return x + 1


@step()
def r_second(x: int) -> int:
    RAN.append("second")
    return x * 10


@step()
def r_other(x: int) -> int:
    RAN.append("other")
    return x


@workflow()
def r_flow(x: int) -> int:
    return r_second(r_first(x))


@workflow(max_recovery_attempts=2)
def r_fragile(x: int) -> int:
    return r_first(x)


@step(max_attempts=4, retry_interval=0.5, backoff=2.0, max_interval=1.5)
def r_flaky() -> str:
    if FLAKY["left"] > 0:
        FLAKY["left"] -= 1
        raise ConnectionError(f"flaky, {FLAKY['left']} failures left")
    return "ok"


@workflow()
def r_retrying() -> str:
    return r_flaky()


@workflow()
def r_swallows() -> str:
    try:
        r_first(1)
    except DeterminismError:
        pass
    return "carried on"


def seed(journal: str, workflow_id: str, name: str, inputs: tuple, steps: list[tuple]) -> None:
    """Write a PENDING run with recorded steps, as a crashed process would have left it."""
    with Engine(journal=journal, recover=False) as engine:
        engine.journal.create_workflows([NewWorkflow(
            workflow_id, name, codec.encode({"args": list(inputs), "kwargs": {}}), 1)], 1)
        for number, step_name, output in steps:
            engine.journal.record_step(StepRecord(
                workflow_id, number, step_name, StepKind.STEP, codec.encode(output), None, 1,
                1, 2))


def test_recovery_resumes_after_the_last_recorded_step(journal_path: str) -> None:
    seed(journal_path, "wf-1", "r_flow", (4,), [(1, "r_first", 100)])
    RAN.clear()
    with Engine(journal=journal_path) as engine:
        assert engine.retrieve("wf-1").result(timeout=10) == 1000  # 100 came from the journal
    assert RAN == ["second"]


def test_determinism_error_names_everything_and_fails_the_run(journal_path: str) -> None:
    seed(journal_path, "wf-2", "r_flow", (4,), [(1, "r_other", 100)])
    with Engine(journal=journal_path) as engine:
        handle = engine.retrieve("wf-2")
        with pytest.raises(DeterminismError) as info:
            handle.result(timeout=10)
        assert "'wf-2'" in str(info.value) and "step 1" in str(info.value)
        assert "'r_other'" in str(info.value) and "'r_first'" in str(info.value)
        assert handle.status() is Status.ERROR


def test_determinism_error_cannot_be_swallowed(journal_path: str) -> None:
    seed(journal_path, "wf-3", "r_swallows", (), [(1, "r_other", 1)])
    with Engine(journal=journal_path) as engine:
        with pytest.raises(DeterminismError):
            engine.retrieve("wf-3").result(timeout=10)


def test_crash_looping_run_is_parked_then_resumable(journal_path: str) -> None:
    seed(journal_path, "wf-4", "r_fragile", (1,), [])
    with Engine(journal=journal_path, recover=False) as engine:
        # Two restarts without progress are allowed; the third parks the run.
        assert engine.journal.note_recoveries([("wf-4", 0)], 5) == [1]
        assert engine.journal.note_recoveries([("wf-4", 0)], 6) == [2]
    with Engine(journal=journal_path) as engine:
        handle = engine.retrieve("wf-4")
        assert handle.status() is Status.PARKED
        with pytest.raises(WorkflowParkedError, match="parked after 3 recovery attempts"):
            handle.result(timeout=1)
        assert engine.resume("wf-4").result(timeout=10) == 2
        assert handle.status() is Status.SUCCESS


def test_progress_resets_the_recovery_count(journal_path: str) -> None:
    seed(journal_path, "wf-5", "r_fragile", (1,), [])
    with Engine(journal=journal_path, recover=False) as engine:
        assert engine.journal.note_recoveries([("wf-5", 0)], 5) == [1]
        assert engine.journal.note_recoveries([("wf-5", 0)], 6) == [2]
        assert engine.journal.note_recoveries([("wf-5", 1)], 7) == [1]


def test_retries_back_off_on_the_injected_clock(engine: Engine, clock: FakeClock) -> None:
    FLAKY["left"] = 3
    assert engine.run(r_retrying, workflow_id="retry-1") == "ok"
    assert clock.waits == [0.5, 1.0, 1.5]  # capped at max_interval
    record = engine.journal.steps_of("retry-1")[0]
    assert record.attempts == 4 and codec.decode(record.output) == "ok"


def test_exhausted_retries_raise_a_typed_error_chaining_the_cause(engine: Engine) -> None:
    FLAKY["left"] = 10
    with pytest.raises(StepRetriesExhaustedError) as info:
        engine.run(r_retrying, workflow_id="retry-2")
    assert isinstance(info.value.__cause__, ConnectionError)
    assert "failed 4 times" in str(info.value)
    step_record = engine.journal.steps_of("retry-2")[0]
    assert step_record.attempts == 4 and step_record.error is not None
    # Replay re-raises the recorded error without running the step again.
    FLAKY["left"] = 0
    with pytest.raises(StepRetriesExhaustedError):
        engine.run(r_retrying, workflow_id="retry-2")
    assert FLAKY["left"] == 0


def test_fork_reuses_steps_before_the_given_one(engine: Engine) -> None:
    RAN.clear()
    assert engine.run(r_flow, 1, workflow_id="orig") == 20
    forked = engine.fork("orig", from_step=2, new_id="forked")
    assert forked.result(timeout=10) == 20
    assert RAN == ["first", "second", "second"]
    assert [s.name for s in engine.journal.steps_of("forked")] == ["r_first", "r_second"]

"""Operator actions (one implementation for the CLI and the engine) and engine start-up."""

from __future__ import annotations

import threading
import time

import pytest

import eoflow
from eoflow import Engine, Status, workflow
from eoflow.engine import recovery
from eoflow.engine.context import active_runtime
from eoflow.errors import ContextError
from eoflow.journal import admin
from eoflow.testing import isolated_definitions

BACKENDS = ("sqlite", "postgres")  # each test that takes a journal runs on both


@workflow(timeout=60)
def o_timed_sleeper() -> int:
    eoflow.sleep(3600)  # suspends: the run stays PENDING with its deadline
    return 1


def _deadline(engine: Engine, wid: str) -> int | None:
    record = engine.journal.get_workflow(wid)
    assert record is not None
    return record.deadline_ms


def test_a_resume_from_the_cli_restarts_the_runs_timeout(journal_path: str) -> None:
    # Bug: the CLI's resume wrote a NULL deadline, so a @workflow(timeout=60) run resumed with
    # `eoflow workflows resume` never timed out again.
    with Engine(journal=journal_path) as engine:
        engine.start(o_timed_sleeper, workflow_id="t1")
        for _ in range(500):
            if engine.journal.steps_of("t1"):
                break
            time.sleep(0.01)
        admin.cancel(journal_path, "t1")
        before = time.time_ns() // 1_000_000
        admin.resume(journal_path, "t1")
        deadline = _deadline(engine, "t1")
        assert deadline is not None and before + 60_000 <= deadline <= before + 70_000
        assert engine.journal.get_workflow("t1").status is Status.PENDING  # type: ignore[union-attr]
        engine.cancel("t1")
        resumed_at = time.time_ns() // 1_000_000
        engine.resume("t1")  # the library's resume is the same change
        deadline = _deadline(engine, "t1")
        assert deadline is not None and resumed_at + 60_000 <= deadline <= resumed_at + 70_000


def _eoflow_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("eoflow")}


def test_a_failed_start_up_releases_everything(journal_path: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Bug: when recovery failed, the engine stayed registered, its threads stayed alive, and
    # the next Engine on the same file got JournalLockedError.
    threads = _eoflow_threads()

    def broken(rt: object) -> list[object]:
        raise RuntimeError("recovery broke")

    monkeypatch.setattr(recovery, "recover", broken)
    with pytest.raises(RuntimeError, match="recovery broke"):
        Engine(journal=journal_path)
    assert active_runtime() is None
    with pytest.raises(ContextError):
        Engine.current()
    for _ in range(200):  # threads that were told to stop finish their last lap
        if _eoflow_threads() <= threads:
            break
        time.sleep(0.01)
    assert _eoflow_threads() <= threads
    monkeypatch.undo()
    with Engine(journal=journal_path) as engine:  # the journal's lock was released
        assert engine.journal.count_by_status() == {}


def test_isolated_definitions_forget_what_the_block_defined() -> None:
    from eoflow.engine.registry import REGISTRY

    with isolated_definitions():
        @workflow(name="o_temporary")
        def temporary() -> None:
            return None

        assert REGISTRY.workflow("o_temporary") is not None
    assert REGISTRY.workflow("o_temporary") is None
    assert REGISTRY.workflow("o_timed_sleeper") is not None  # module-level ones stay


@workflow()
def o_untimed_child() -> int:
    return 2


@workflow(timeout=60)
def o_timed_parent() -> int:
    return int(eoflow.Engine.current().start(o_untimed_child).result())


def test_a_parents_deadline_reaches_its_children(engine: Engine) -> None:
    assert engine.run(o_timed_parent, workflow_id="tp") == 2
    parent, child = engine.journal.get_workflow("tp"), engine.journal.get_workflow("tp-1")
    assert parent is not None and child is not None
    assert parent.deadline_ms is not None and child.deadline_ms == parent.deadline_ms


O_QUEUE = eoflow.Queue("o-queue")


def test_resuming_an_enqueued_run_starts_it_now(engine: Engine) -> None:
    engine.queues.stop()  # nothing would start it
    handle = O_QUEUE.enqueue(o_untimed_child)
    assert handle.status() is Status.ENQUEUED
    assert engine.resume(handle.workflow_id).result(timeout=10) == 2


FLAKY = {"broken": True, "first_runs": 0}


@eoflow.step()
def o_first() -> int:
    FLAKY["first_runs"] += 1
    return 1


@eoflow.step()
def o_second() -> int:
    if FLAKY["broken"]:
        raise RuntimeError("bug in o_second")
    return 2


@workflow()
def o_two_steps() -> int:
    return o_first() + o_second()


def test_a_failed_run_resumes_from_its_failed_step_after_a_fix(journal_path: str) -> None:
    FLAKY.update(broken=True, first_runs=0)
    with Engine(journal=journal_path) as engine:
        with pytest.raises(RuntimeError, match="bug in o_second"):
            engine.run(o_two_steps, workflow_id="err")
        assert engine.retrieve("err").status() is Status.ERROR
        FLAKY["broken"] = False  # the fix is deployed
        admin.resume(journal_path, "err")  # from the CLI, while the app runs
        assert engine.retrieve("err").result(timeout=10) == 3
        assert FLAKY["first_runs"] == 1  # the recorded first step was not run again
        assert [s.error for s in engine.journal.steps_of("err")] == [None, None]


def test_fork_past_the_last_step_is_refused(engine: Engine) -> None:
    from eoflow.errors import WorkflowStateError

    FLAKY.update(broken=False)
    engine.run(o_two_steps, workflow_id="two")
    engine.fork("two", 3).result(timeout=10)  # reuse both steps, run the rest again
    with pytest.raises(WorkflowStateError, match="use 1 to 3"):
        engine.fork("two", 4)


def test_isolated_definitions_cover_every_process_wide_table() -> None:
    from eoflow import kafka_consume, scheduled, transaction
    from eoflow.engine.kafka.defs import CONSUMERS
    from eoflow.engine.registry import REGISTRY
    from eoflow.engine.scheduling.queues import queue_named
    from eoflow.engine.scheduling.schedules import SCHEDULES

    with isolated_definitions():
        eoflow.Queue("o-temporary-queue")

        @kafka_consume("o-temp-topic", group_id="o-temp")
        @transaction(name="o_temp_tx")
        def handle(topic: str, partition: int, message: object) -> None:
            return None

        @scheduled("0 * * * *")
        @workflow(name="o_temp_tick")
        def tick(scheduled_at: object, started_at: object) -> None:
            return None

        @eoflow.on_start
        def hook() -> None:
            return None

        assert queue_named("o-temporary-queue") is not None
    assert queue_named("o-temporary-queue") is None
    assert CONSUMERS.get("o_temp_tx") is None and SCHEDULES.get("o_temp_tick") is None
    assert REGISTRY.workflow("o_temp_tick") is None and hook not in REGISTRY.start_hooks

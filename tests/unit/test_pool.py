"""The worker pool: lanes run in order one at a time, other tasks concurrently, within bounds."""

from __future__ import annotations

import threading
import time

import pytest

from eoflow.engine import pool as pool_module
from eoflow.engine.pool import WorkerPool


def _drain(pool: WorkerPool, timeout: float = 10) -> None:
    done = threading.Event()
    pool.submit(done.set)
    assert done.wait(timeout)


def test_a_lane_runs_in_submission_order_one_at_a_time() -> None:
    pool = WorkerPool(4)
    seen: list[int] = []
    running = [0, 0]  # now, most at once
    lock = threading.Lock()

    def task(i: int) -> None:
        with lock:
            running[0] += 1
            running[1] = max(running)
        time.sleep(0.001)
        with lock:
            seen.append(i)
            running[0] -= 1

    for i in range(40):
        pool.submit(lambda i=i: task(i), lane="p0")  # type: ignore[misc]
    finished = threading.Event()
    pool.submit(finished.set, lane="p0")
    assert finished.wait(10)
    assert seen == list(range(40)) and running[1] == 1
    pool.shutdown(5)


def test_tasks_without_a_lane_run_concurrently_up_to_the_worker_count() -> None:
    pool = WorkerPool(3)
    barrier = threading.Barrier(3, timeout=5)
    passed = []
    for _ in range(3):
        pool.submit(lambda: passed.append(barrier.wait()))
    _drain(pool)
    deadline = time.monotonic() + 5
    while len(passed) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(passed) == 3  # all three were inside the barrier at once
    assert sum(1 for t in threading.enumerate() if t.name.startswith("eoflow-worker")) >= 3
    pool.shutdown(5)


def test_a_busy_lane_takes_turns_with_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "LANE_TURN", 2)
    pool = WorkerPool(1)  # one worker: order shows who got a turn
    order: list[str] = []
    gate = threading.Event()
    pool.submit(gate.wait)  # hold the only worker while both lanes fill
    for i in range(6):
        pool.submit(lambda i=i: order.append(f"a{i}"), lane="a")  # type: ignore[misc]
    pool.submit(lambda: order.append("b0"), lane="b")
    gate.set()
    finished = threading.Event()
    pool.submit(finished.set, lane="a")
    assert finished.wait(10)
    assert order.index("b0") == 2  # after a's first turn of two, not after all six
    pool.shutdown(5)


def test_a_held_lane_waits_for_its_work_to_come_back() -> None:
    pool = WorkerPool(2)
    order: list[str] = []
    held: list[str | None] = []
    pool.submit(lambda: held.append(pool.hold_current_lane()), lane="l")
    pool.submit(lambda: order.append("second"), lane="l")
    time.sleep(0.1)
    assert held == ["l"] and order == []  # the lane waits, holding no thread
    _drain(pool)  # other work goes on
    pool.release("l", lambda: order.append("first"))
    done = threading.Event()
    pool.submit(done.set, lane="l")
    assert done.wait(10) and order == ["first", "second"]
    assert pool.hold_current_lane() is None  # outside a lane task
    pool.shutdown(5)


def test_a_failing_task_is_logged_and_the_worker_goes_on(caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    pool = WorkerPool(1)

    def boom() -> None:
        raise RuntimeError("task bug")

    pool.submit(boom)
    _drain(pool)
    assert any("unexpected error in a task" in r.getMessage() for r in caplog.records)
    pool.shutdown(5)


def test_shutdown_drops_queued_tasks_and_reports_an_overrun() -> None:
    pool = WorkerPool(1)
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []
    pool.submit(lambda: (started.set(), release.wait(5), ran.append("slow")))
    pool.submit(lambda: ran.append("queued"))
    assert started.wait(5)
    assert pool.shutdown(0.1) is False  # the running task overran the grace period
    release.set()
    time.sleep(0.2)
    assert ran == ["slow"]  # the queued one never ran
    pool.submit(lambda: ran.append("after"))  # a stopped pool takes nothing
    time.sleep(0.1)
    assert ran == ["slow"]

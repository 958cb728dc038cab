"""The worker pool: lanes run in order one at a time, other tasks concurrently, within bounds."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator

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


# -- without sleeps: each pool's threads are joined, and each ordering is forced, not timed ----

_pool_names = itertools.count()
WAIT = 5.0  # seconds a test waits for something that happens at once when the pool is right


class Pools:
    """Makes pools with names of their own, so that a test can count their threads; at the end
    of the test it shuts them down and joins every thread they started."""

    def __init__(self) -> None:
        self.made: list[tuple[WorkerPool, str]] = []

    def __call__(self, workers: int) -> WorkerPool:
        name = f"test-pool-{next(_pool_names)}"
        pool = WorkerPool(workers, name=name)
        self.made.append((pool, name))
        return pool

    def threads(self, pool: WorkerPool) -> list[threading.Thread]:
        name = next(n for p, n in self.made if p is pool)
        return [t for t in threading.enumerate() if t.name.startswith(f"{name}-")]

    def stop(self, pool: WorkerPool, grace: float = WAIT) -> bool:
        """Shut `pool` down and join its threads (all of them have ended when this returns)."""
        threads = self.threads(pool)
        ended = pool.shutdown(grace)
        for thread in threads:
            thread.join(WAIT)
            assert not thread.is_alive(), f"{thread.name} did not end after shutdown"
        return ended


@pytest.fixture
def pools() -> Iterator[Pools]:
    made = Pools()
    yield made
    for pool, _ in made.made:
        made.stop(pool)


def _settle(pool: WorkerPool, lane: str | None = None) -> None:
    """Submit a task and wait until it has run: in a lane, everything submitted to the lane
    before it has run too; without a lane, only that every earlier task was started."""
    done = threading.Event()
    pool.submit(done.set, lane=lane)
    assert done.wait(WAIT)


def test_a_lane_keeps_its_later_tasks_back_while_one_runs(pools: Pools) -> None:
    pool = pools(4)
    gate = threading.Event()
    seen: list[int] = []
    running, most = [0], [0]
    lock = threading.Lock()

    def task(i: int) -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        if i == 0:
            assert gate.wait(WAIT)
        with lock:
            seen.append(i)
            running[0] -= 1

    for i in range(20):
        pool.submit(lambda i=i: task(i), lane="p0")  # type: ignore[misc]
    # Three workers are free: they take the plain task below, not the lane's next tasks (were
    # the lane ignored, they would run tasks 1.. first: the queue is first in, first out).
    _settle(pool)
    assert seen == []
    gate.set()
    _settle(pool, lane="p0")
    assert seen == list(range(20))
    assert most[0] == 1


def test_two_lanes_run_side_by_side(pools: Pools) -> None:
    pool = pools(2)
    both = threading.Barrier(2, timeout=WAIT)
    met: list[str] = []

    def meet(lane: str) -> None:
        both.wait()
        met.append(lane)

    for lane in ("a", "b"):
        pool.submit(lambda lane=lane: meet(lane), lane=lane)  # type: ignore[misc]
    _settle(pool, lane="a")
    _settle(pool, lane="b")
    assert sorted(met) == ["a", "b"]  # each waited for the other: they ran at the same time


def test_tasks_without_a_lane_run_together_up_to_the_worker_count(pools: Pools) -> None:
    pool = pools(4)
    together = threading.Barrier(4, timeout=WAIT)
    passed: list[int] = []
    finished = threading.Semaphore(0)

    def meet() -> None:
        passed.append(together.wait())
        finished.release()

    for _ in range(4):
        pool.submit(meet)
    for _ in range(4):
        assert finished.acquire(timeout=WAIT)
    assert sorted(passed) == [0, 1, 2, 3]  # all four were inside the barrier at once
    assert len(pools.threads(pool)) == 4


def test_the_pool_starts_threads_on_demand_and_never_more_than_its_workers(pools: Pools) -> None:
    pool = pools(3)
    assert pools.threads(pool) == []  # no work yet, no thread
    gate = threading.Event()
    started, finished = threading.Semaphore(0), threading.Semaphore(0)
    ran: list[int] = []

    def blocked(i: int) -> None:
        started.release()
        assert gate.wait(WAIT)
        ran.append(i)
        finished.release()

    for i in range(10):
        pool.submit(lambda i=i: blocked(i))  # type: ignore[misc]
    for _ in range(3):
        assert started.acquire(timeout=WAIT)
    assert len(pools.threads(pool)) == 3  # ten tasks wait, three threads run them
    assert len(ran) == 0
    gate.set()
    for _ in range(10):
        assert finished.acquire(timeout=WAIT)
    assert sorted(ran) == list(range(10))
    for _ in range(5):  # busy again after a rest: the same threads serve
        pool.submit(finished.release)
    for _ in range(5):
        assert finished.acquire(timeout=WAIT)
    assert len(pools.threads(pool)) == 3


def test_a_busy_lane_gives_way_after_LANE_TURN_tasks(pools: Pools) -> None:
    turn = pool_module.LANE_TURN
    pool = pools(1)  # one worker: the order of the record is the order of the turns
    gate = threading.Event()
    order: list[str] = []
    pool.submit(lambda: assert_(gate.wait(WAIT)))  # the worker waits while the queue fills
    for i in range(2 * turn + 3):
        pool.submit(lambda i=i: order.append(f"a{i}"), lane="a")  # type: ignore[misc]
    for i in range(2):
        pool.submit(lambda i=i: order.append(f"b{i}"), lane="b")  # type: ignore[misc]
    pool.submit(lambda: order.append("plain"))
    gate.set()
    _settle(pool, lane="a")
    expected = ([f"a{i}" for i in range(turn)] + ["b0", "b1", "plain"]
                + [f"a{i}" for i in range(turn, 2 * turn + 3)])
    assert order == expected


def assert_(condition: bool) -> None:
    assert condition


def test_shutdown_waits_for_a_running_task_and_drops_the_queued_ones(pools: Pools) -> None:
    pool = pools(1)
    started = threading.Event()
    ran: list[str] = []

    def running() -> None:
        started.set()
        threading.Event().wait(0.05)  # still running when shutdown begins
        ran.append("running")

    pool.submit(running)
    pool.submit(lambda: ran.append("queued"))
    pool.submit(lambda: ran.append("queued in a lane"), lane="l")
    assert started.wait(WAIT)
    assert pools.stop(pool) is True
    assert ran == ["running"]  # waited for, and nothing queued ran (every thread has ended)


def test_shutdown_gives_up_after_its_grace_when_a_task_overruns(pools: Pools) -> None:
    pool = pools(1)
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def slow() -> None:
        started.set()
        release.wait(WAIT)
        ran.append("slow")

    pool.submit(slow)
    pool.submit(lambda: ran.append("queued"))
    assert started.wait(WAIT)
    begun = time.monotonic()
    assert pool.shutdown(0.05) is False
    assert 0.04 < time.monotonic() - begun < 2
    release.set()
    assert pools.stop(pool) is True
    assert ran == ["slow"]
    pool.submit(lambda: ran.append("after"))  # a stopped pool takes nothing, starts nothing
    pool.submit(lambda: ran.append("after, in a lane"), lane="l")
    assert pools.threads(pool) == [] and ran == ["slow"]


def test_a_task_that_raises_is_logged_and_its_worker_goes_on(pools: Pools,
                                                             caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    pool = pools(1)
    caplog.set_level(logging.ERROR, logger="eoflow.engine")
    where: list[str] = []

    def boom() -> None:
        where.append(threading.current_thread().name)
        raise RuntimeError("task bug")

    def leave() -> None:
        where.append(threading.current_thread().name)
        raise SystemExit(3)  # not even this ends the worker

    pool.submit(boom)
    pool.submit(leave)
    pool.submit(boom, lane="l")
    pool.submit(lambda: where.append(threading.current_thread().name), lane="l")
    _settle(pool, lane="l")
    assert len(where) == 4 and len(set(where)) == 1  # one thread ran them all, in turn
    assert len(pools.threads(pool)) == 1
    failures = [r for r in caplog.records if r.name == "eoflow.engine"]
    assert [r.levelno for r in failures] == [logging.ERROR] * 3
    assert all("unexpected error in a task" in r.getMessage() for r in failures)
    raised = [r.exc_info[1] for r in failures if r.exc_info]
    assert [type(e) for e in raised] == [RuntimeError, SystemExit, RuntimeError]
    assert str(raised[0]) == "task bug"


def test_a_held_lane_runs_nothing_until_its_work_comes_back_first(pools: Pools) -> None:
    pool = pools(1)  # one worker: were the lane not held, it would run "second" next
    order: list[str] = []
    held: list[str | None] = []
    pool.submit(lambda: held.append(pool.hold_current_lane()), lane="l")
    pool.submit(lambda: order.append("second"), lane="l")
    pool.submit(lambda: order.append("plain"))  # the only worker is free for other work
    _settle(pool)
    assert held == ["l"] and order == ["plain"]
    pool.release("l", lambda: order.append("first"))
    _settle(pool, lane="l")
    assert order == ["plain", "first", "second"]
    pool.submit(lambda: held.append(pool.hold_current_lane()))  # outside a lane: no hold
    _settle(pool)
    assert held == ["l", None]


def test_a_warm_pool_starts_a_thread_for_a_burst(pools: Pools) -> None:
    pool = pools(2)
    _settle(pool)  # one thread now exists; wait until it is idle again
    deadline = time.monotonic() + WAIT
    while pool._idle < 1 and time.monotonic() < deadline:  # white box: no public signal
        threading.Event().wait(0.001)
    both = threading.Barrier(2, timeout=0.2)
    passed: list[int] = []
    finished = threading.Semaphore(0)

    def meet() -> None:
        try:
            passed.append(both.wait())
        finally:
            finished.release()

    with pool._cv:  # white box: the idle worker cannot wake between the two submits
        pool.submit(meet)
        pool.submit(meet)
    for _ in range(2):
        assert finished.acquire(timeout=WAIT)
    assert sorted(passed) == [0, 1]  # fails: the second task waited for the first to give up

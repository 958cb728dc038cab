"""The queue dispatcher through an engine: concurrency limits, priority order, and delayed
runs on the engine's (fake) clock."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from eoflow import Engine, Queue, Status, workflow
from eoflow.engine.clock import FakeClock

from .fakes import wait_until

BACKENDS = ("sqlite", "postgres")  # each test that takes a journal runs on both

LOCK = threading.Condition()
STARTED: list[int] = []  # workflow bodies, in the order they began
ACTIVE = {"now": 0, "max": 0}
RELEASED: set[int] = set()  # dq_hold runs allowed to finish
ALL = -1  # in RELEASED: every dq_hold run may finish


@workflow()
def dq_hold(i: int) -> int:
    with LOCK:
        STARTED.append(i)
        ACTIVE["now"] += 1
        ACTIVE["max"] = max(ACTIVE["max"], ACTIVE["now"])
        LOCK.wait_for(lambda: i in RELEASED or ALL in RELEASED, timeout=10)
        ACTIVE["now"] -= 1
    return i


@workflow()
def dq_job(i: int) -> int:
    with LOCK:
        STARTED.append(i)
    return i


PAIR = Queue("dq-pair", concurrency=2)
RANKED = Queue("dq-ranked", concurrency=1, priority=True)
ARRIVAL = Queue("dq-arrival", concurrency=1)  # priority= of enqueue is ignored here
LATER = Queue("dq-later", concurrency=1)


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    with LOCK:
        STARTED.clear()
        ACTIVE.update(now=0, max=0)
        RELEASED.clear()
    yield
    release(ALL)  # never leave a run blocked


def release(i: int) -> None:
    with LOCK:
        RELEASED.add(i)
        LOCK.notify_all()


def started() -> list[int]:
    with LOCK:
        return list(STARTED)


def starts_reach(count: int) -> Callable[[], bool]:
    return lambda: len(started()) >= count


def full_pass(engine: Engine) -> None:
    """Return once the dispatcher has made a whole pass that began after this call: it clears
    the wakeup at the start of each pass, so two wakeups taken mean one pass is complete."""
    wake = engine.runtime.queue_wakeup
    for _ in range(2):
        wake.set()
        wait_until(lambda: not wake.is_set(), 5, "the dispatcher to take its wakeup")


def statuses(engine: Engine, name: str) -> Counter[Status]:
    return Counter(r.status for r in engine.journal.list_workflows(name=name, limit=100))


@pytest.fixture
def held(engine: Engine) -> Iterator[Engine]:
    """The engine, with every blocked run released before it closes."""
    try:
        yield engine
    finally:
        release(ALL)


def test_concurrency_limit_holds_as_runs_finish(held: Engine) -> None:
    handles = [PAIR.enqueue(dq_hold, i) for i in range(6)]
    for finished in range(5):
        # `finished` runs were released one by one; each freed slot started exactly one more.
        expected = min(finished + 2, 6)
        wait_until(starts_reach(expected), 10, f"{expected} runs to start")
        full_pass(held)  # a dispatcher that ignored the limit would start more here
        assert len(started()) == expected
        assert held.journal.queue_running("dq-pair") == min(2, 6 - finished)
        assert statuses(held, "dq_hold") == +Counter({
            Status.SUCCESS: finished, Status.PENDING: min(2, 6 - finished),
            Status.ENQUEUED: 6 - expected})
        first = started()[finished]
        release(first)
        assert handles[first].result(timeout=10) == first
    release(ALL)
    assert [h.result(timeout=10) for h in handles] == list(range(6))
    assert ACTIVE["max"] == 2
    assert sorted(started()) == list(range(6))
    assert started()[2:] == [2, 3, 4, 5]  # freed slots go to the queue in arrival order


@pytest.mark.parametrize(("queue", "order"), [
    (RANKED, [5, 1, 3, 2, 0, 4]),  # lower priority first, then arrival
    (ARRIVAL, [0, 1, 2, 3, 4, 5]),
], ids=["priority", "arrival"])
def test_priority_then_arrival(journal_path: str, queue: Queue, order: list[int]) -> None:
    priorities = [3, 1, 2, 1, 3, 0]
    with Engine(journal=journal_path, recover=False, workers=4) as engine:
        engine.queues.stop()  # fill the queue first: the next engine's dispatcher chooses
        handles = [engine.enqueue(queue, dq_job, (i,), {}, priority=p)
                   for i, p in enumerate(priorities)]
        assert statuses(engine, "dq_job") == Counter({Status.ENQUEUED: 6})
    assert started() == []
    with Engine(journal=journal_path, workers=4) as engine:
        for i, handle in enumerate(handles):
            assert engine.retrieve(handle.workflow_id).result(timeout=10) == i
    assert started() == order


def test_delayed_run_waits_for_the_clock(engine: Engine, clock: FakeClock) -> None:
    enqueued_at = clock.now_ms()
    later = LATER.enqueue(dq_job, 1, delay=30)
    now = LATER.enqueue(dq_job, 2)
    # The delayed run neither starts nor holds the queue's only slot.
    assert now.result(timeout=10) == 2
    record = engine.journal.get_workflow(later.workflow_id)
    assert record is not None and record.not_before_ms == enqueued_at + 30_000
    full_pass(engine)
    assert later.status() is Status.ENQUEUED and started() == [2]
    clock.advance(29.999)
    full_pass(engine)
    assert later.status() is Status.ENQUEUED and started() == [2]
    clock.advance(0.001)
    engine.runtime.queue_wakeup.set()
    assert later.result(timeout=10) == 1
    assert started() == [2, 1]


@workflow()
def dq_plain() -> str:
    return "done"


def test_a_run_ending_wakes_the_dispatcher_only_when_a_queue_is_declared(
        journal_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ended run may open a queue slot; with no queue declared in the process there is
    none to open, and the dispatcher thread is left asleep (once a run, that wake-up was a
    thread switch on the Kafka workflow path)."""
    from eoflow.engine.scheduling import queues

    monkeypatch.setattr(queues._QUEUES, "items", {})
    with Engine(journal_path) as engine:
        wakeup = engine.runtime.queue_wakeup
        woken: list[int] = []
        monkeypatch.setattr(wakeup, "set", lambda: woken.append(1))
        wakeup.clear()
        assert engine.run(dq_plain) == "done"
        assert woken == []
        Queue("dq-declared-late")
        assert engine.run(dq_plain) == "done"
        assert woken == [1]

"""Queues: durable enqueue, order, concurrency and rate limits, priorities, dedup, delays."""

from __future__ import annotations

import threading
import time

import pytest

import eoflow
from eoflow import Engine, Queue, Status, step, workflow
from eoflow.errors import ConfigError, DedupError

ORDER: list[int] = []
ACTIVE = {"now": 0, "max": 0}
LOCK = threading.Lock()


@step()
def q_track(i: int) -> int:
    with LOCK:
        ACTIVE["now"] += 1
        ACTIVE["max"] = max(ACTIVE["max"], ACTIVE["now"])
        ORDER.append(i)
    time.sleep(0.005)
    with LOCK:
        ACTIVE["now"] -= 1
    return i


@workflow()
def q_job(i: int) -> int:
    return q_track(i)


@workflow()
def q_fan_out(n: int) -> list[int]:
    handles = [FAN.enqueue(q_job, i) for i in range(n)]
    return [h.result(timeout=30) for h in handles]


SERIAL = Queue("q-serial", concurrency=1)
PAIRS = Queue("q-pairs", concurrency=2)
RANKED = Queue("q-ranked", concurrency=1, priority=True)
RATED = Queue("q-rated", rate_limit=(5, 0.5))
FAN = Queue("q-fan", concurrency=3)


def reset() -> None:
    ORDER.clear()
    ACTIVE.update(now=0, max=0)


def test_enqueued_runs_start_in_order_within_concurrency(journal_path: str) -> None:
    reset()
    with Engine(journal=journal_path) as engine:
        handles = [SERIAL.enqueue(q_job, i) for i in range(20)]
        assert [h.result(timeout=30) for h in handles] == list(range(20))
        assert ORDER == list(range(20)) and ACTIVE["max"] == 1
        record = engine.journal.get_workflow(handles[0].workflow_id)
        assert record is not None and record.queue == "q-serial"
    reset()
    with Engine(journal=journal_path) as engine:
        handles = [PAIRS.enqueue(q_job, i) for i in range(30)]
        assert [h.result(timeout=30) for h in handles] == list(range(30))
        assert ACTIVE["max"] <= 2


def test_priority_then_arrival(journal_path: str) -> None:
    reset()
    with Engine(journal=journal_path, recover=False) as engine:
        engine.queues.stop()  # enqueue everything first, then let the dispatcher choose
        handles = [RANKED.enqueue(q_job, i, priority=(5 if i < 3 else 1)) for i in range(6)]
    with Engine(journal=journal_path) as engine:
        for h in handles:
            engine.retrieve(h.workflow_id).result(timeout=30)
    assert ORDER == [3, 4, 5, 0, 1, 2]


def test_rate_limit(journal_path: str) -> None:
    reset()
    with Engine(journal=journal_path):
        started = time.monotonic()
        handles = [RATED.enqueue(q_job, i) for i in range(12)]
        assert [h.result(timeout=30) for h in handles] == list(range(12))
        assert time.monotonic() - started >= 1.0  # 12 runs at 5 per 0.5 s: three windows


def test_dedup_refuses_a_second_live_run(journal_path: str) -> None:
    with Engine(journal=journal_path, recover=False) as engine:
        engine.queues.stop()
        first = SERIAL.enqueue(q_job, 1, dedup_id="order-1")
        with pytest.raises(DedupError, match="dedup id 'order-1' already has a live run") as info:
            SERIAL.enqueue(q_job, 2, dedup_id="order-1")
        assert info.value.existing == first.workflow_id
    with Engine(journal=journal_path) as engine:
        assert engine.retrieve(first.workflow_id).result(timeout=30) == 1
        again = SERIAL.enqueue(q_job, 3, dedup_id="order-1")  # the first one finished
        assert again.result(timeout=30) == 3


def test_delay(journal_path: str) -> None:
    with Engine(journal=journal_path) as engine:
        started = time.monotonic()
        handle = PAIRS.enqueue(q_job, 7, delay=0.3)
        assert engine.retrieve(handle.workflow_id).status() is Status.ENQUEUED
        assert handle.result(timeout=30) == 7
        assert time.monotonic() - started >= 0.3


def test_enqueue_from_a_workflow_is_deterministic(journal_path: str) -> None:
    with Engine(journal=journal_path) as engine:
        assert engine.run(q_fan_out, 5, workflow_id="fan") == list(range(5))
        assert engine.run(q_fan_out, 5, workflow_id="fan") == list(range(5))
        children = sorted(r.workflow_id for r in engine.journal.list_workflows(limit=50)
                          if r.parent_id == "fan")
        assert children == [f"fan-{i}" for i in range(1, 6)]


def test_bad_queue_settings() -> None:
    with pytest.raises(ConfigError, match="concurrency must be at least 1"):
        Queue("bad", concurrency=0)
    with pytest.raises(ConfigError, match="rate_limit"):
        Queue("bad2", rate_limit=(0, 1.0))
    with pytest.raises(ConfigError, match="declared twice"):
        Queue("q-serial", concurrency=5)
    with pytest.raises(eoflow.errors.NoEngineError):
        SERIAL.enqueue(q_job, 1)

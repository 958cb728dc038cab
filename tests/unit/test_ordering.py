"""Runs of one lane (a Kafka partition) keep their order through sleeps and restarts."""

from __future__ import annotations

import threading
from collections.abc import Callable

import eoflow
from eoflow import Engine, Status, step, workflow
from eoflow.engine import starts
from eoflow.engine.clock import ManualClock
from eoflow.engine.registry import definition_of

BACKENDS = ("sqlite", "postgres")  # each test that takes a journal runs on both

STARTED: list[str] = []
FINISHED: list[str] = []


@step()
def o_mark(event: str) -> None:
    STARTED.append(event) if event.endswith(":start") else FINISHED.append(event)


@workflow()
def o_lane_run(name: str, nap: float) -> str:
    o_mark(f"{name}:start")
    if nap:
        eoflow.sleep(nap)
    o_mark(f"{name}:end")
    return name


def _until(condition: Callable[[], bool], timeout: float = 10) -> bool:
    for _ in range(int(timeout / 0.005)):
        if condition():
            return True
        threading.Event().wait(0.005)
    return condition()


def _launch(engine: Engine, runs: list[tuple[str, float]], lane: str) -> list[str]:
    definition = definition_of(o_lane_run)
    handles = starts.launch(engine.runtime, [(definition, f"{lane}-{name}", (name, nap), {})
                                             for name, nap in runs], lane=lane)
    return [h.workflow_id for h in handles]


def test_a_sleeping_run_keeps_its_lane(journal_path: str) -> None:
    STARTED.clear()
    FINISHED.clear()
    clock = ManualClock()
    with Engine(journal=journal_path, clock=clock, workers=4) as engine:
        ids = _launch(engine, [("a", 3600), ("b", 0), ("c", 0)], "kafka:t:0:g")
        other = _launch(engine, [("x", 0)], "kafka:t:1:g")  # another lane is not held up
        assert _until(lambda: "x:end" in FINISHED)
        assert _until(lambda: engine.journal.get_workflow(ids[0]).not_before_ms is not None)  # type: ignore[union-attr]
        threading.Event().wait(0.2)  # room for b and c to start if the lane were free
        assert STARTED == ["a:start", "x:start"] or STARTED == ["x:start", "a:start"]
        clock.advance(3700)
        for wid in ids + other:
            assert engine.retrieve(wid).result(timeout=10)
    assert [e for e in STARTED if not e.startswith("x")] == ["a:start", "b:start", "c:start"]
    assert [e for e in FINISHED if not e.startswith("x")] == ["a:end", "b:end", "c:end"]


def test_the_order_holds_across_a_restart(journal_path: str) -> None:
    STARTED.clear()
    FINISHED.clear()
    clock = ManualClock()
    with Engine(journal=journal_path, clock=clock, workers=4) as engine:
        ids = _launch(engine, [("a", 3600), ("b", 0)], "kafka:t:0:g")
        assert _until(lambda: engine.journal.get_workflow(ids[0]).not_before_ms is not None)  # type: ignore[union-attr]
    assert STARTED == ["a:start"]  # b waited behind the sleeper; both stay PENDING
    with Engine(journal=journal_path, clock=clock, workers=4) as engine:
        threading.Event().wait(0.2)  # recovery: b must still wait for a to wake
        assert STARTED == ["a:start"]
        assert engine.retrieve(ids[1]).status() is Status.PENDING
        clock.advance(3700)
        assert [engine.retrieve(w).result(timeout=10) for w in ids] == ["a", "b"]
    assert FINISHED == ["a:end", "b:end"]

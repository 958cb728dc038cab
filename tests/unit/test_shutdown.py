"""A graceful shutdown leaves parents and their children PENDING; the next engine ends both."""

from __future__ import annotations

import threading
from collections.abc import Callable

import eoflow
from eoflow import Engine, Status, step, workflow

BACKENDS = ("sqlite", "postgres")  # each test that takes a journal runs on both

GATE = threading.Event()
ENTERED = threading.Event()
CHILD_SLEEP = [0.0]


@step()
def sd_wait() -> int:
    ENTERED.set()
    GATE.wait(10)
    return 1


@step()
def sd_sleep_entered() -> int:
    ENTERED.set()
    return 1


@workflow()
def sd_child() -> int:
    if CHILD_SLEEP[0]:
        sd_sleep_entered()
        eoflow.sleep(CHILD_SLEEP[0])
        return 5
    return sd_plus_one(sd_wait())  # the boundary before this step is where it stops


@step()
def sd_plus_one(x: int) -> int:
    return x + 1


@workflow()
def sd_parent_calls() -> int:
    return sd_child() * 10


@workflow()
def sd_parent_starts() -> int:
    handle = eoflow.Engine.current().start(sd_child)
    return int(handle.result()) * 100


def _close_while_inside(journal_path: str, parent: Callable[[], int], wid: str) -> None:
    GATE.clear()
    ENTERED.clear()
    engine = Engine(journal=journal_path, grace_period=5)
    engine.start(parent, workflow_id=wid)
    assert ENTERED.wait(10)
    runs = [engine.runtime.runs.get(w) for w in (wid, f"{wid}-1")]
    closer = threading.Thread(target=engine.close)
    closer.start()
    for _ in range(2000):  # open the gate once close has asked the running runs to stop
        if all(r is None or r.done.is_set() or r.context is None
               or getattr(r.context, "stop_reason", None) for r in runs):
            break
        threading.Event().wait(0.005)
    GATE.set()
    closer.join(10)
    with Engine(journal=journal_path, recover=False) as reader:
        statuses = {r.workflow_id: r.status for r in reader.journal.list_workflows(limit=10)}
    assert statuses == {wid: Status.PENDING, f"{wid}-1": Status.PENDING}, statuses


def test_a_parent_waiting_in_a_child_it_called_stays_pending(journal_path: str) -> None:
    CHILD_SLEEP[0] = 0.0
    _close_while_inside(journal_path, sd_parent_calls, "p1")
    GATE.set()
    with Engine(journal=journal_path) as engine:
        assert engine.retrieve("p1").result(timeout=10) == 20
        assert engine.retrieve("p1-1").status() is Status.SUCCESS


def test_a_parent_waiting_on_a_started_child_stays_pending(journal_path: str) -> None:
    CHILD_SLEEP[0] = 0.0
    _close_while_inside(journal_path, sd_parent_starts, "p2")
    GATE.set()
    with Engine(journal=journal_path) as engine:
        assert engine.retrieve("p2").result(timeout=10) == 200


def test_a_parent_waiting_on_a_sleeping_child_stays_pending(journal_path: str) -> None:
    CHILD_SLEEP[0] = 2.0  # suspends (past a second): the child holds no thread
    _close_while_inside(journal_path, sd_parent_calls, "p3")
    with Engine(journal=journal_path) as engine:
        assert engine.retrieve("p3").result(timeout=10) == 50

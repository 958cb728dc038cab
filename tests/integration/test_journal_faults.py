"""A full disk and a write lock held by another connection, for real: runs whose records
cannot be written wait in their lane and finish once the journal writes again, no restart."""

from __future__ import annotations

import threading
import time

import apsw
import pytest

from eoflow import Engine, Status, step, workflow
from eoflow.engine import starts
from eoflow.engine.registry import definition_of
from eoflow.journal import connection

BIG = "x" * 20_000  # a step output that needs new pages
DONE: list[int] = []
GATE = threading.Event()


@step()
def jx_gate() -> int:
    GATE.wait(10)
    return 0


@step()
def jx_big(i: int) -> str:
    DONE.append(i)
    return BIG


@workflow()
def jx_run(i: int) -> int:
    jx_gate()
    jx_big(i)
    return i


def _launch(engine: Engine, count: int) -> list[str]:
    definition = definition_of(jx_run)
    handles = starts.launch(engine.runtime, [(definition, f"jx-{i}", (i,), {})
                                             for i in range(count)], lane="kafka:t:0:g")
    return [h.workflow_id for h in handles]


def _pages(engine: Engine, sql: str) -> int:
    return int(engine.journal.committer.read(  # type: ignore[attr-defined]
        lambda c: c.execute(sql).fetchall())[0][0])


def _wait(condition: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_a_full_disk_pauses_the_lane_until_space_returns(journal_path: str) -> None:
    DONE.clear()
    GATE.clear()
    with Engine(journal=journal_path) as engine:
        ids = _launch(engine, 3)
        pages = _pages(engine, "PRAGMA page_count")
        _pages(engine, f"PRAGMA max_page_count={pages + 1}")  # the disk is full now
        GATE.set()
        _wait(lambda: len(DONE) >= 2)  # the first run's big step ran, its record failed: again
        time.sleep(0.3)
        assert set(DONE) == {0}  # the lane waits for it: the runs behind it did not start
        assert engine.retrieve(ids[0]).status() is Status.PENDING
        _pages(engine, "PRAGMA max_page_count=1073741823")  # space is back
        assert [engine.retrieve(w).result(timeout=60) for w in ids] == [0, 1, 2]
        assert [i for i in DONE if i != 0] == [1, 2]


def test_the_write_lock_held_elsewhere_delays_but_strands_nothing(
        journal_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    DONE.clear()
    GATE.clear()
    monkeypatch.setattr(connection, "BUSY_TIMEOUT_MS", 200)  # give up on the lock quickly
    with Engine(journal=journal_path) as engine:
        ids = _launch(engine, 3)
        GATE.clear()
        other = apsw.Connection(journal_path)
        other.setbusytimeout(10_000)  # the engine may be writing the runs it just started
        other.execute("BEGIN IMMEDIATE")  # another process's write transaction
        try:
            GATE.set()
            run = engine.runtime.runs.get(ids[0])
            assert run is not None
            _wait(lambda: run.journal_failures >= 2)  # timed out on the lock, and again
            assert DONE == []  # nothing went on past the record that could not be written
            assert engine.retrieve(ids[1]).status() is Status.PENDING
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert [engine.retrieve(w).result(timeout=60) for w in ids] == [0, 1, 2]
        assert all(engine.retrieve(w).status() is Status.SUCCESS for w in ids)

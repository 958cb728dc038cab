"""The group committer on a real SQLite file: writes from many threads share commits, are
durable when acknowledged, and one failing write rolls back alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from eoflow.errors import EngineClosedError
from eoflow.journal.batching import GroupCommitter
from eoflow.journal.connection import connect, translate


@pytest.fixture
def committer(tmp_path: Path) -> Iterator[GroupCommitter]:
    path = str(tmp_path / "g.db")
    conn = connect(path)
    conn.execute("CREATE TABLE t(v INTEGER)")
    writer = GroupCommitter(conn, path, translate)
    yield writer
    writer.close()
    conn.close()


def _committed(committer: GroupCommitter) -> list[int]:
    """What another connection sees: only what was committed."""
    other = apsw.Connection(committer.path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return sorted(int(r[0]) for r in other.execute("SELECT v FROM t"))
    finally:
        other.close()


def test_concurrent_writes_are_all_durable_when_acknowledged(committer: GroupCommitter) -> None:
    acknowledged: list[int] = []
    lock = threading.Lock()

    def writer(i: int) -> None:
        committer.write(lambda c: c.execute("INSERT INTO t VALUES (?)", (i,)))
        with lock:
            acknowledged.append(i)
            assert i in _committed(committer)  # durable before acknowledged

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(acknowledged) == list(range(40)) == _committed(committer)


def test_a_failing_write_rolls_back_alone(committer: GroupCommitter) -> None:
    start = threading.Barrier(3, timeout=5)
    errors: list[BaseException] = []

    def good(v: int) -> None:
        start.wait()
        committer.write(lambda c: c.execute("INSERT INTO t VALUES (?)", (v,)), savepoint=True)

    def bad() -> None:
        start.wait()

        def work(c: apsw.Connection) -> None:
            c.execute("INSERT INTO t VALUES (99)")
            raise ValueError("this write fails")

        try:
            committer.write(work, savepoint=True)
        except ValueError as error:
            errors.append(error)

    threads = [threading.Thread(target=good, args=(1,)), threading.Thread(target=good, args=(2,)),
               threading.Thread(target=bad)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(errors) == 1 and _committed(committer) == [1, 2]


def test_on_durable_follows_the_commit_and_a_turn_runs_in_the_callers_thread(
        committer: GroupCommitter) -> None:
    seen: list[tuple[object, list[int]]] = []
    done = threading.Event()

    def durable(error: BaseException | None) -> None:
        seen.append((error, _committed(committer)))
        done.set()

    committer.write(lambda c: c.execute("INSERT INTO t VALUES (5)"), wait=False,
                    on_durable=durable, urgent=True)
    assert done.wait(5) and seen == [(None, [5])]
    where = committer.turn(lambda c: threading.current_thread().name)
    assert where == threading.current_thread().name


def test_a_write_after_close_is_refused_clearly(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    conn = connect(path)
    writer = GroupCommitter(conn, path, translate)
    writer.close()
    with pytest.raises(EngineClosedError):
        writer.write(lambda c: c.execute("SELECT 1"))
    conn.close()

"""The group committer on a real SQLite file: writes from many threads share commits, are
durable when acknowledged, and one failing write rolls back alone."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from eoflow.errors import EngineClosedError, JournalError, JournalWriteError
from eoflow.journal.batching import GroupCommitter
from eoflow.journal.connection import SQLITE, connect

CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="none")


@pytest.fixture
def committer(tmp_path: Path) -> Iterator[GroupCommitter]:
    path = str(tmp_path / "g.db")
    conn = connect(path)
    conn.execute("CREATE TABLE t(v INTEGER)")
    writer = GroupCommitter(conn, path, SQLITE)
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


def test_on_durable_follows_the_commit_and_a_turn_runs_in_the_callers_context(
        committer: GroupCommitter) -> None:
    seen: list[tuple[object, list[int]]] = []
    done = threading.Event()

    def durable(error: BaseException | None) -> None:
        seen.append((error, _committed(committer)))
        done.set()

    committer.write(lambda c: c.execute("INSERT INTO t VALUES (5)"), wait=False,
                    on_durable=durable, urgent=True)
    assert done.wait(5) and seen == [(None, [5])]
    # User code runs on the writer (no hand-off to the caller's thread and back), but in the
    # caller's context: its context variables (the run, eoflow.db(), the span) are seen.
    token = CALLER.set("the caller's")
    try:
        where = committer.turn(lambda c: (threading.current_thread().name, CALLER.get()))
    finally:
        CALLER.reset(token)
    assert where == ("eoflow-writer", "the caller's")


def test_a_write_after_close_is_refused_clearly(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    conn = connect(path)
    writer = GroupCommitter(conn, path, SQLITE)
    writer.close()
    with pytest.raises(EngineClosedError):
        writer.write(lambda c: c.execute("SELECT 1"))
    conn.close()


# -- batches made on purpose: the writer is held in a turn while the next batch is queued -----

WAIT = 5.0  # seconds a test waits for something that happens at once when the committer is right
Work = Callable[[apsw.Connection], Any]


class Rig:
    """A committer on a real journal file, with a count of the commits of its write connection
    and a handle on its writer thread."""

    def __init__(self, path: str, linger: float, gather: float) -> None:
        self.path = path
        self.conn = connect(path)
        self.conn.execute("CREATE TABLE t(v INTEGER)")
        self.commits = 0
        self.conn.set_commit_hook(self._count)
        before = set(threading.enumerate())
        self.committer = GroupCommitter(self.conn, path, SQLITE, linger=linger, gather=gather)
        self.writer = next(t for t in threading.enumerate()
                           if t not in before and t.name == "eoflow-writer")

    def _count(self) -> bool:
        self.commits += 1
        return False  # let the commit go ahead

    def committed(self, table: str = "t") -> list[int]:
        """What another connection sees: only what was committed."""
        other = connect(self.path, readonly=True)
        try:
            return sorted(int(r[0]) for r in other.execute(f"SELECT * FROM {table}"))
        finally:
            other.close()

    def close(self) -> None:
        self.committer.close()
        self.conn.close()
        assert not self.writer.is_alive()


@pytest.fixture
def rigs(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(linger: float = 0.002, gather: float = 0.0005) -> Rig:
        made.append(Rig(str(tmp_path / f"j{len(made)}.db"), linger, gather))
        return made[-1]

    yield make
    for rig in made:
        rig.close()


@pytest.fixture
def rig(rigs: Callable[..., Rig]) -> Rig:
    return rigs()


class Call(threading.Thread):
    """`fn()` in a thread of its own; `finish()` joins it, then `result` or `error` holds what
    it returned or raised."""

    def __init__(self, fn: Callable[[], object]) -> None:
        super().__init__(name="test-caller", daemon=True)
        self._fn = fn
        self.result: object = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as error:  # handed to the test
            self.error = error

    def finish(self) -> Call:
        self.join(WAIT)
        assert not self.is_alive(), "the call is still blocked"
        return self


class Queued:
    """Counts the ops queued on any committer (wraps GroupCommitter._submit), so that a test can
    start a blocking write in a thread and know it is in the queue before it goes on."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self.count = 0

    def note(self) -> None:
        with self._cv:
            self.count += 1
            self._cv.notify_all()

    def call(self, fn: Callable[[], object]) -> Call:
        """Run `fn` (which queues one op, then waits) in a thread; return once it is queued."""
        target = self.count + 1
        call = Call(fn)
        self.reach(target)
        return call

    def reach(self, count: int) -> None:
        with self._cv:
            assert self._cv.wait_for(lambda: self.count >= count, WAIT)


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> Queued:
    counter = Queued()
    submit = GroupCommitter._submit

    def counting(self: GroupCommitter, *args: Any, **kwargs: Any) -> Any:
        batch = submit(self, *args, **kwargs)
        counter.note()
        return batch

    monkeypatch.setattr(GroupCommitter, "_submit", counting)
    return counter


@contextlib.contextmanager
def held_writer(committer: GroupCommitter) -> Iterator[None]:
    """Hold the writer thread in a turn: what is queued meanwhile forms the next batch, which
    the writer takes whole once the block ends."""
    entered, proceed = threading.Event(), threading.Event()

    def hold(conn: apsw.Connection) -> None:
        entered.set()
        proceed.wait(WAIT)

    holder = Call(lambda: committer.turn(hold))
    assert entered.wait(WAIT)
    try:
        yield
    finally:
        proceed.set()
        holder.finish()
    assert holder.error is None


def insert(v: int, then: Callable[[], None] | None = None) -> Work:
    def work(conn: apsw.Connection) -> int:
        conn.execute("INSERT INTO t VALUES (?)", (v,))
        if then is not None:
            then()
        return v * 10

    return work


def flush(committer: GroupCommitter) -> None:
    """Wait until every batch queued so far has been released, callbacks and all. The first
    write may join the last of them (whose callbacks run after its waiters return); the second
    is then in a batch of its own, taken once the writer thread has released the earlier one."""
    committer.write(lambda conn: None)
    committer.write(lambda conn: None)


class Told:
    """on_durable callbacks that keep what they were told, and what was committed then."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.told: list[tuple[str, BaseException | None, list[int]]] = []

    def callback(self, name: str) -> Callable[[BaseException | None], None]:
        def durable(error: BaseException | None) -> None:
            self.told.append((name, error, self.rig.committed()))

        return durable


def test_waiting_writers_share_one_commit_and_return_once_it_is_durable(
        rig: Rig, queued: Queued) -> None:
    committer = rig.committer

    def writer(v: int) -> tuple[object, bool]:
        result = committer.write(insert(v))
        return result, v in rig.committed()  # durable when acknowledged

    with held_writer(committer):
        before = rig.commits
        calls = [queued.call(lambda v=v: writer(v)) for v in range(10)]  # type: ignore[misc]
        assert rig.committed() == []
    assert [call.finish().result for call in calls] == [(v * 10, True) for v in range(10)]
    assert rig.commits == before + 2  # the held batch, then one commit for all ten


def test_a_failing_write_raises_to_its_caller_alone_and_the_rest_of_its_batch_commits(
        rig: Rig, queued: Queued) -> None:
    committer = rig.committer
    told = Told(rig)

    def fail() -> None:
        raise ValueError("this write fails")

    with held_writer(committer):
        before = rig.commits
        first = queued.call(lambda: committer.write(insert(1), savepoint=True))
        bad = queued.call(lambda: committer.write(insert(99, then=fail), savepoint=True))
        committer.write(insert(2), wait=False, savepoint=True, on_durable=told.callback("2"))
        last = queued.call(lambda: committer.write(insert(3), savepoint=True))
    assert first.finish().error is None and first.result == 10
    assert last.finish().error is None and last.result == 30
    assert isinstance(bad.finish().error, ValueError)
    assert str(bad.error) == "this write fails"
    assert rig.commits == before + 2  # all four were one batch
    assert rig.committed() == [1, 2, 3]  # 99 was undone alone
    flush(committer)
    assert told.told == [("2", None, [1, 2, 3])]


def test_a_failing_turn_rolls_back_alone_and_raises_in_its_caller(
        rig: Rig, queued: Queued) -> None:
    committer = rig.committer
    told = Told(rig)
    threads: list[str] = []

    def bad(conn: apsw.Connection) -> None:
        threads.append(threading.current_thread().name)
        conn.execute("INSERT INTO t VALUES (7)")
        raise KeyError("turn fails")

    with held_writer(committer):
        committer.write(insert(1), wait=False, on_durable=told.callback("1"))
        turn = queued.call(lambda: committer.turn(bad))
        committer.write(insert(2), wait=False, on_durable=told.callback("2"))
    assert isinstance(turn.finish().error, KeyError)  # raised to its caller
    assert threads == ["eoflow-writer"]  # run on the writer, in the caller's context
    flush(committer)
    assert rig.committed() == [1, 2]
    assert [(name, error) for name, error, _ in told.told] == [("1", None), ("2", None)]


def test_an_sqlite_error_in_a_write_is_raised_as_a_journal_error_naming_the_journal(
        rig: Rig) -> None:
    with pytest.raises(JournalError) as raised:
        rig.committer.write(lambda conn: conn.execute("INSERT INTO missing VALUES (1)"),
                            savepoint=True)
    assert raised.value.path == rig.path
    assert rig.path in str(raised.value) and "no such table: missing" in str(raised.value)
    assert rig.committer.write(insert(4)) == 40  # the committer goes on
    assert rig.committed() == [4]


def test_on_durable_is_told_none_once_per_write_after_the_commit(rig: Rig,
                                                                 queued: Queued) -> None:
    committer = rig.committer
    told = Told(rig)
    with held_writer(committer):
        committer.write(insert(1), wait=False, on_durable=told.callback("quiet"))
        waited = queued.call(lambda: committer.write(insert(2), on_durable=told.callback("wait")))
        committer.write(insert(3), wait=False, urgent=True, on_durable=told.callback("urgent"))
        assert told.told == []
    assert waited.finish().result == 20
    flush(committer)
    # each was told once, with every row of its batch already visible to other connections
    assert sorted(told.told, key=lambda t: t[0]) == [
        ("quiet", None, [1, 2, 3]), ("urgent", None, [1, 2, 3]), ("wait", None, [1, 2, 3])]


def test_when_the_commit_fails_the_whole_batch_fails_and_each_caller_is_told(
        rig: Rig, queued: Queued, caplog: pytest.LogCaptureFixture) -> None:
    committer = rig.committer
    told = Told(rig)
    committer.write(lambda conn: conn.execute(
        "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
        "CREATE TABLE child(pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"))
    with held_writer(committer):
        committer.write(insert(1), wait=False, on_durable=told.callback("1"))
        orphan = queued.call(lambda: committer.write(
            lambda conn: conn.execute("INSERT INTO child VALUES (42)")))  # fails at COMMIT
        other = queued.call(lambda: committer.write(insert(2)))
    error = orphan.finish().error
    assert isinstance(error, JournalError) and error.path == rig.path
    assert "FOREIGN KEY constraint failed" in str(error)
    assert other.finish().error is error
    flush(committer)
    assert told.told == [("1", error, [])]
    assert rig.committed() == [] and rig.committed("child") == []
    assert any("a batch of 3 writes was rolled back" in r.getMessage()
               for r in caplog.records if r.levelno == logging.ERROR)
    assert committer.write(insert(5)) == 50  # the transaction was ended: the next one begins
    assert rig.committed() == [5]


def test_when_sqlite_ends_the_transaction_mid_batch_the_rest_of_the_batch_is_not_run(
        rig: Rig, queued: Queued) -> None:
    committer = rig.committer
    told = Told(rig)
    ran: list[str] = []

    def disk_full(conn: apsw.Connection) -> None:
        conn.execute("ROLLBACK")  # what SQLite does itself on SQLITE_FULL or an I/O error
        raise apsw.FullError("database or disk is full")

    def later(conn: apsw.Connection) -> None:
        ran.append(threading.current_thread().name)

    with held_writer(committer):
        before = rig.commits
        committer.write(insert(1), wait=False, on_durable=told.callback("1"))
        full = queued.call(lambda: committer.write(disk_full))
        after = queued.call(lambda: committer.write(later))
        turn = queued.call(lambda: committer.turn(later))
    error = full.finish().error
    assert isinstance(error, JournalWriteError) and "disk is full" in str(error)
    assert after.finish().error is error and turn.finish().error is error
    assert ran == []  # neither the write nor the turn after the loss ran
    assert rig.commits == before + 1  # the held batch's: the lost one never committed
    flush(committer)
    assert told.told == [("1", error, [])]
    assert rig.committed() == []


def test_a_batch_that_cannot_begin_fails_every_write_and_turn_in_it(rig: Rig) -> None:
    committer = rig.committer
    told = Told(rig)
    rig.conn.setbusytimeout(0)  # fail at once rather than after ten seconds
    other = connect(rig.path)
    ran: list[str] = []
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(JournalWriteError, match="stayed locked"):
            committer.write(insert(1), on_durable=told.callback("1"))
        with pytest.raises(JournalWriteError, match="stayed locked"):
            committer.turn(lambda conn: ran.append("turn"))
        assert ran == []
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert committer.write(insert(2)) == 20
    assert rig.committed() == [2]
    assert len(told.told) == 1 and isinstance(told.told[0][1], JournalWriteError)


def test_an_urgent_write_does_not_linger_and_a_lingering_one_rides_the_next_commit(
        rigs: Callable[..., Rig]) -> None:
    rig = rigs(linger=30.0)  # a write nobody waits for would wait half a minute for company
    committer = rig.committer
    urgent, quiet = threading.Event(), threading.Event()
    committer.write(insert(1), wait=False, urgent=True, on_durable=lambda e: urgent.set())
    assert urgent.wait(WAIT) and rig.committed() == [1]
    before = rig.commits
    committer.write(insert(2), wait=False, on_durable=lambda e: quiet.set())
    assert not quiet.wait(0.02)  # lingering, uncommitted
    assert rig.committed() == [1]
    assert committer.write(insert(3)) == 30  # a waiting writer takes it along
    assert quiet.wait(WAIT)
    assert rig.committed() == [1, 2, 3] and rig.commits == before + 1


def test_close_commits_what_is_queued_then_refuses_work_clearly(
        rigs: Callable[..., Rig]) -> None:
    rig = rigs(linger=30.0)
    committer = rig.committer
    told = Told(rig)
    lingering = threading.Event()
    for v in (1, 2, 3):
        committer.write(insert(v), wait=False, on_durable=told.callback(str(v)))
    committer.write(insert(4), wait=False, on_durable=lambda e: lingering.set())
    assert not lingering.wait(0.02)  # the writer waits for company
    assert rig.committed() == []
    closing = Call(committer.close).finish()  # does not wait out the linger
    assert closing.error is None and not rig.writer.is_alive()
    assert rig.committed() == [1, 2, 3, 4] and lingering.is_set()
    assert [(name, error) for name, error, _ in told.told] == [
        ("1", None), ("2", None), ("3", None)]
    for after in (lambda: committer.write(insert(5), wait=False),
                  lambda: committer.write(insert(5)),
                  lambda: committer.turn(insert(5)),
                  lambda: committer.read(lambda conn: 1)):
        with pytest.raises(EngineClosedError) as refused:
            after()
        assert refused.value.path == rig.path and rig.path in str(refused.value)
    committer.close()  # a second close is harmless
    assert rig.committed() == [1, 2, 3, 4]


def test_writes_apply_in_the_order_they_were_queued_and_read_sees_them(rig: Rig) -> None:
    committer = rig.committer
    committer.write(insert(1), wait=False)
    committer.write(lambda conn: conn.execute("UPDATE t SET v = v * 10"), wait=False)
    committer.write(insert(2), wait=False)
    assert committer.read(lambda conn: sorted(r[0] for r in conn.execute("SELECT v FROM t"))
                          ) == [2, 10]
    assert rig.committed() == [2, 10]


def test_a_failing_callback_is_logged_and_the_others_are_still_told(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    committer = rig.committer
    told = Told(rig)

    def broken(error: BaseException | None) -> None:
        raise RuntimeError("callback bug")

    with held_writer(committer):
        committer.write(insert(1), wait=False, on_durable=broken)
        committer.write(insert(2), wait=False, on_durable=told.callback("2"))
    flush(committer)
    assert told.told == [("2", None, [1, 2])]
    failures = [r for r in caplog.records if "durability callback failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None
    assert str(failures[0].exc_info[1]) == "callback bug"
    assert committer.write(insert(3)) == 30


# -- whom a batch waits for --------------------------------------------------------------------

class Caller(threading.Thread):
    """One thread that runs the calls sent to it, one at a time: a caller the committer knows
    again from one batch to the next, as it knows a workflow's worker thread."""

    def __init__(self) -> None:
        super().__init__(name="test-caller", daemon=True)
        self._inbox: queue.Queue[Sent | None] = queue.Queue()
        self.start()

    def send(self, fn: Callable[[], object]) -> Sent:
        sent = Sent(fn)
        self._inbox.put(sent)
        return sent

    def run(self) -> None:
        while (sent := self._inbox.get()) is not None:
            sent.run()

    def stop(self) -> None:
        self._inbox.put(None)
        self.join(WAIT)


class Sent:
    """A call sent to a Caller: `finish()` waits for it, then `result` or `error` holds it."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self._fn = fn
        self.done = threading.Event()
        self.result: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as error:  # handed to the test
            self.error = error
        finally:
            self.done.set()

    def finish(self) -> Sent:
        assert self.done.wait(WAIT), "the call is still blocked"
        return self


class Turns:
    """Writes of one value each, from Callers, counted in as queued; a write may hold the
    writer inside its batch until released, so that the next write queues meanwhile (the
    batches then follow each other with no pause, as when the writer is the bottleneck)."""

    def __init__(self, rig: Rig, queued: Queued) -> None:
        self.rig, self.queued, self.values = rig, queued, iter(range(100))

    def write(self, caller: Caller) -> Sent:
        """Queue a write from `caller`; return once it is queued."""
        value, target = next(self.values), self.queued.count + 1
        sent = caller.send(lambda: self.rig.committer.write(insert(value)))
        self.queued.reach(target)
        return sent

    def held(self, caller: Caller, release: Callable[[], None] | None = None
             ) -> threading.Event:
        """Queue a write from `caller` that holds the writer in its batch; run `release` (the
        batch before it goes), then return once the writer holds. Set the event to go on."""
        hold, entered = threading.Event(), threading.Event()
        value = next(self.values)

        def then() -> None:
            entered.set()
            assert hold.wait(WAIT)

        target = self.queued.count + 1
        caller.send(lambda: self.rig.committer.write(insert(value, then)))
        self.queued.reach(target)
        if release is not None:
            release()
        assert entered.wait(WAIT)
        return hold


def test_two_groups_of_callers_that_take_turns_are_gathered_into_one_batch(
        rigs: Callable[..., Rig], queued: Queued) -> None:
    """After one partition of a Kafka consumer was late, its four fell into two groups: one
    group wrote while the other ran its next step, each paying a commit. When a batch's
    callers came while the last batch was written, the next batch waits for the callers of
    both (those of the last one that wrote before it too)."""
    rig = rigs(gather=30.0)  # the writer waits for the callers it expects as long as it takes
    turns, first, second = Turns(rig, queued), Caller(), Caller()
    try:
        hold = turns.held(first)  # each batch is written while the next one's caller comes
        hold = turns.held(second, release=hold.set)
        hold = turns.held(first, release=hold.set)
        last = turns.write(second)
        hold.set()
        last.finish()
        assert rig.committed() == [0, 1, 2, 3]
        before = rig.commits
        alone = turns.write(first)
        assert not alone.done.wait(0.05), "committed without the other group"
        assert rig.committed() == [0, 1, 2, 3] and rig.commits == before
        turns.write(second).finish()
        assert alone.finish().error is None
        assert rig.committed() == [0, 1, 2, 3, 4, 5] and rig.commits == before + 1
    finally:
        first.stop()
        second.stop()


def test_threads_taking_turns_at_a_light_load_are_not_waited_for(
        rigs: Callable[..., Rig], queued: Queued) -> None:
    """A pool's workers taking turns, each write done before the next comes: each commits at
    once, not after the time the writer may wait for callers it expects."""
    rig = rigs(gather=30.0)
    turns, first, second = Turns(rig, queued), Caller(), Caller()
    try:
        for caller in (first, second, first, second, first):
            assert turns.write(caller).finish().error is None
        assert rig.committed() == [0, 1, 2, 3, 4]
    finally:
        first.stop()
        second.stop()

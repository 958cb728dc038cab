"""Executors and the ownership of runs, at the journal: claims, takeovers, hand-overs, fencing
(journal/executors.py). On both backends with one engine; on PostgreSQL with two."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from eoflow.errors import ExecutorFencedError, JournalUnavailableError
from eoflow.journal import codec
from eoflow.journal.records import NewWorkflow, Status, StepKind, StepRecord
from eoflow.journal.sqlite import SQLiteJournal
from eoflow.journal.sqljournal import SqlJournal


@pytest.fixture(params=["sqlite", "postgres"])
def journal(request: pytest.FixtureRequest) -> Iterator[SqlJournal]:
    if request.param == "postgres":
        from eoflow.journal.postgres import PostgresJournal
        opened: SqlJournal = PostgresJournal.open(request.getfixturevalue("pg_url"))
    else:
        opened = SQLiteJournal.open(os.fspath(request.getfixturevalue("tmp_path") / "j.db"))
    yield opened
    opened.close()


def new(wid: str, **fields: object) -> NewWorkflow:
    return NewWorkflow(wid, "flow", codec.encode({"args": [], "kwargs": {}}), 1, **fields)


def step(wid: str, number: int) -> StepRecord:
    return StepRecord(wid, number, "s", StepKind.STEP, codec.encode(1), None, 1, 1, 2)


def owners(journal: SqlJournal) -> dict[str, str | None]:
    return dict(journal.committer.read(lambda conn: [
        (str(w), e) for w, e in conn.execute(
            "SELECT workflow_id, executor_id FROM eoflow_workflows")]))


def test_an_executor_claims_what_no_one_owns_and_is_fenced_once_taken_over(
        journal: SqlJournal) -> None:
    journal.create_workflows([new("before")], 1)  # no executor yet: unowned
    me = journal.register_executor(lease_ms=1000, now_ms=10)
    expired, claimed = journal.claim_runs(20)
    assert expired == [] and [r.workflow_id for r in claimed] == ["before"]
    journal.create_workflows([new("mine"), new("queued", status=Status.ENQUEUED,
                                               queue="q")], 30)
    assert owners(journal) == {"before": me, "mine": me, "queued": None}
    assert journal.claim_runs(40) == ([], [])  # nothing left to claim
    assert journal.claim_run("mine")  # it is this executor's already
    listed = [(e.executor_id, e.status) for e in journal.list_executors()]
    assert listed == [(me, "ALIVE")]
    journal.renew_lease(60)
    # Another executor found this one's lease run out and took its runs over:
    journal.committer.write(lambda conn: conn.execute(
        "UPDATE eoflow_executors SET status = 'EXPIRED'"))
    seen: list[ExecutorFencedError] = []
    journal.set_fenced_callback(seen.append)
    with pytest.raises(ExecutorFencedError, match=f"{me} is EXPIRED: its lease ran out"):
        journal.record_step(step("mine", 1))
    with pytest.raises(ExecutorFencedError):
        journal.renew_lease(70)
    assert len(seen) == 1 and journal.load_steps("mine") == {}


def test_a_queue_limit_holds_in_the_journal(journal: SqlJournal) -> None:
    journal.register_executor(lease_ms=1000, now_ms=1)
    journal.create_workflows([new(f"q{i}", status=Status.ENQUEUED, queue="q")
                              for i in range(5)], 2)
    assert len(journal.dequeue("q", 3, False, 10, concurrency=2)) == 2
    assert journal.dequeue("q", 4, False, 10, concurrency=2) == []  # two run already
    journal.finish_workflow("q0", Status.SUCCESS, codec.encode(1), None, 5)
    assert [w for w, _, _ in journal.dequeue("q", 6, False, 10, concurrency=2)] == ["q2"]


def test_two_executors_on_one_postgres_journal(pg_url: str) -> None:
    from eoflow.journal.postgres import PostgresJournal

    first, second = PostgresJournal.open(pg_url), PostgresJournal.open(pg_url)
    try:
        a = first.register_executor(lease_ms=1000, now_ms=1000)
        b = second.register_executor(lease_ms=1000, now_ms=1000)
        first.create_workflows([new("a1"), new("a2")], 1000)
        assert second.claim_runs(1500) == ([], [])  # a's lease holds until 2000
        assert not second.claim_run("a1")  # a live executor owns it
        # The queue limit holds across executors: counted in the write transaction.
        first.create_workflows([new(f"q{i}", status=Status.ENQUEUED, queue="q")
                                for i in range(3)], 1000)
        assert len(first.dequeue("q", 1100, False, 10, concurrency=2)) == 2
        assert second.dequeue("q", 1100, False, 10, concurrency=2) == []
        # So does a rate limit: 3 a second, counted from the runs dequeued by anyone.
        first.create_workflows([new(f"r{i}", status=Status.ENQUEUED, queue="r")
                                for i in range(5)], 1000)
        assert len(first.dequeue("r", 1100, False, 2, rate=(3, 1000))) == 2
        assert len(second.dequeue("r", 1200, False, 10, rate=(3, 1000))) == 1
        assert second.dequeue("r", 1300, False, 10, rate=(3, 1000)) == []
        assert len(second.dequeue("r", 2150, False, 10, rate=(3, 1000))) == 2  # a second on
        # a stops renewing: past its lease, b expires it and takes its runs, in order.
        expired, claimed = second.claim_runs(2500)
        assert expired == [a]
        assert [r.workflow_id for r in claimed] == ["a1", "a2", "q0", "q1", "r0", "r1"]
        with pytest.raises(ExecutorFencedError):  # a wakes up: refused
            first.record_step(step("a1", 1))
        second.record_step(step("a1", 1))
        # A clean stop hands runs over at once: no lease to wait for.
        third = PostgresJournal.open(pg_url)
        try:
            c = third.register_executor(lease_ms=60_000, now_ms=3000)
            assert second.stop_executor(3000) == 9
            _, taken = third.claim_runs(3001)
            assert {r.workflow_id for r in taken} == {"a1", "a2", "q0", "q1", "r0", "r1", "r2",
                                                      "r3", "r4"}
            states = {e.executor_id: e.status for e in third.list_executors()}
            assert states == {a: "EXPIRED", b: "STOPPED", c: "ALIVE"}
        finally:
            third.close()
    finally:
        first.close()
        second.close()


def test_engines_write_their_own_runs_side_by_side_and_a_takeover_never_overlaps_them(
        pg_url: str) -> None:
    """Steps, outcomes, new runs and @transaction bodies of different engines take the
    journal's write lock shared; anything else (a takeover here) takes it alone, and waits for
    the batches in flight. A takeover of an executor whose lease ran out first ends that
    executor's session if it is inside a transaction (which rolls back): no batch of the
    executor it expires commits after it."""
    import threading

    from eoflow.journal.postgres import PostgresJournal

    first, second = PostgresJournal.open(pg_url), PostgresJournal.open(pg_url)
    inside, release = threading.Event(), threading.Event()
    outcome: list[BaseException | None] = []

    def hold(conn: object) -> None:  # a long @transaction body of the first engine
        inside.set()
        assert release.wait(10)

    def holder_batch() -> None:
        try:
            first.committer.turn(hold, shared=True)
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    def open_batch() -> threading.Thread:
        inside.clear()
        release.clear()
        holder = threading.Thread(target=holder_batch)
        holder.start()
        assert inside.wait(10)
        return holder

    try:
        first.register_executor(lease_ms=5000, now_ms=1000)
        second.register_executor(lease_ms=5000, now_ms=1000)
        first.create_workflows([new("a1")], 1000)
        second.create_workflows([new("b1")], 1000)
        holder = open_batch()
        second.record_step(step("b1", 1))  # beside the open batch: it does not wait for it
        second.finish_workflow("b1", Status.SUCCESS, codec.encode(1), None, 1100, urgent=True)
        second.create_workflows([new("b2")], 1100)
        # While a's lease holds, a takeover waits for a's batch (and takes nothing).
        looked: list[object] = []
        taker = threading.Thread(target=lambda: looked.append(second.claim_runs(1500)))
        taker.start()
        taker.join(0.5)
        assert taker.is_alive(), "the takeover ran beside a batch of another engine"
        release.set()
        holder.join(10)
        taker.join(10)
        assert outcome == [None] and looked == [([], [])]
        # a's lease ran out while its next batch is open: that batch is ended, then taken.
        holder = open_batch()
        claimed = [r.workflow_id for r in second.claim_runs(7000)[1]]
        assert claimed == ["a1"]
        release.set()
        holder.join(10)
        assert len(outcome) == 2 and isinstance(outcome[1], JournalUnavailableError), outcome
        with pytest.raises(ExecutorFencedError):
            first.record_step(step("a1", 1))
        assert first.load_steps("a1") == {}
    finally:
        release.set()
        first.close()
        second.close()


def test_an_engine_paused_inside_a_kafka_batch_holds_the_journal_for_a_lease_at_most(
        pg_url: str) -> None:
    """A Kafka batch sends its handlers' statements in a pipeline. An engine paused between two
    handlers (SIGSTOP, a VM migration) must leave its session idle in a transaction, which the
    server ends after the lease, releasing the journal's write lock: in the middle of a
    pipeline the server would wait for it for ever, and every other engine with it."""
    import threading

    from eoflow.journal.postgres import PostgresJournal

    first, second = PostgresJournal.open(pg_url), PostgresJournal.open(pg_url)
    paused, wake = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def handler(db: Any) -> None:
        db.execute("SELECT 1")

    def pause(db: Any) -> None:  # the next handler, before it sends anything
        paused.set()
        wake.wait(15)

    def batch() -> None:
        try:
            first.tx.apply_keyed([("k1", "h", handler, "p0"), ("k2", "h", pause, "p0")], 1)
        except BaseException as error:  # its session was ended under it
            failures.append(error)

    try:
        paused_id = first.register_executor(lease_ms=500, now_ms=1000)
        second.register_executor(lease_ms=60_000, now_ms=1000)
        holder = threading.Thread(target=batch)
        holder.start()
        assert paused.wait(10)
        started = time.monotonic()
        second.create_workflows([new("b1")], 2000)
        expired, _ = second.claim_runs(2000)  # takes the write lock alone
        assert expired == [paused_id]
        assert time.monotonic() - started < 5, "the paused engine held the journal"
    finally:
        wake.set()
        holder.join(10)
        first.close()
        second.close()


@pytest.mark.parametrize("host", ["", "hôte-büro"])
def test_a_takeover_ends_the_session_of_an_engine_paused_mid_pipeline(
        pg_url: str, host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Paused between a pipeline's statements and their Sync, an engine's session is not idle
    in a transaction: the server would wait for it for ever. The engine taking over ends it
    (its writer is named after its executor), then goes on; also when its host name is not
    ASCII, which the server escapes in the session's name."""
    import socket
    import threading

    from eoflow.journal.postgres import PostgresJournal

    if host:
        monkeypatch.setattr(socket, "gethostname", lambda: host)

    first, second = PostgresJournal.open(pg_url), PostgresJournal.open(pg_url)
    paused, wake = threading.Event(), threading.Event()

    def mid_pipeline(conn: Any) -> None:  # user code, holding the journal's write lock
        raw = conn.ready()
        with raw.pipeline():
            raw.execute("SELECT 1")
            paused.set()
            wake.wait(15)

    def batch() -> None:
        with contextlib.suppress(Exception):  # its session is ended under it
            first.committer.turn(mid_pipeline, shared=True)

    try:
        paused_id = first.register_executor(lease_ms=500, now_ms=1000)
        monkeypatch.undo()
        assert paused_id.startswith(host)
        second.register_executor(lease_ms=60_000, now_ms=1000)
        first.create_workflows([new("a1")], 1000)
        holder = threading.Thread(target=batch)
        holder.start()
        assert paused.wait(10)
        started = time.monotonic()
        expired, claimed = second.claim_runs(2000)  # takes the write lock alone
        assert time.monotonic() - started < 5, "the paused engine held the journal"
        assert expired == [paused_id] and [r.workflow_id for r in claimed] == ["a1"]
    finally:
        wake.set()
        holder.join(10)
        first.close()
        second.close()


def test_an_executor_is_visible_only_with_its_session_named(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: the writer's session is named after its executor in the batch that
    registers it. Named in a batch of its own after it, an engine paused in between was ALIVE
    (its lease could run out) while holding the write lock under a name no takeover looked
    for, and every takeover waited. Here, a naming that fails leaves no executor behind."""
    from eoflow.errors import JournalError
    from eoflow.journal import pg
    from eoflow.journal.postgres import PostgresJournal

    journal = PostgresJournal.open(pg_url)
    try:
        monkeypatch.setitem(pg.QPG, "name_session", "SELECT no_such_function(?)")
        with pytest.raises(JournalError):
            journal.register_executor(lease_ms=60_000, now_ms=1)
        monkeypatch.undo()
        assert journal.list_executors() == []
        executor_id = journal.register_executor(lease_ms=60_000, now_ms=2)
        names = journal.committer.read(lambda conn: conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        ).fetchall())
        assert names[0][0].startswith("eoflow ") and names[0][0].endswith(executor_id)
    finally:
        journal.close()

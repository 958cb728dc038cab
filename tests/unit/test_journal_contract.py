"""The journal contract, run against every Journal implementation: SQLite and PostgreSQL.

A new store joins by adding its factory to IMPLEMENTATIONS."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest

from eoflow.errors import (
    DedupError,
    JournalError,
    WorkflowConflictError,
    WorkflowNotFoundError,
    WorkflowStateError,
)
from eoflow.journal import codec
from eoflow.journal.interface import Journal
from eoflow.journal.records import KafkaKey, NewWorkflow, Status, StepKind, StepRecord
from eoflow.journal.sqlite import SQLiteJournal


def _postgres(request: pytest.FixtureRequest) -> Journal:
    from eoflow.journal.postgres import PostgresJournal
    return PostgresJournal.open(request.getfixturevalue("pg_url"))


IMPLEMENTATIONS: dict[str, Callable[[pytest.FixtureRequest], Journal]] = {
    "sqlite": lambda request: SQLiteJournal.open(
        os.fspath(request.getfixturevalue("tmp_path") / "contract.db")),
    "postgres": _postgres,
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def journal(request: pytest.FixtureRequest) -> Iterator[Journal]:
    opened = IMPLEMENTATIONS[request.param](request)
    yield opened
    opened.close()


def new(wid: str, name: str = "flow", **fields: object) -> NewWorkflow:
    return NewWorkflow(wid, name, codec.encode({"args": [], "kwargs": {}}), 1, **fields)


def step(wid: str, number: int, name: str = "s", kind: StepKind = StepKind.STEP,
         output: object = 1) -> StepRecord:
    return StepRecord(wid, number, name, kind, codec.encode(output), None, 1, 1, 2)


def test_create_is_idempotent_and_reports_the_existing_run(journal: Journal) -> None:
    assert journal.create_workflows([new("a"), new("b")], 5) == [
        (True, "flow", Status.PENDING), (True, "flow", Status.PENDING)]
    assert journal.create_workflows([new("a", "other")], 6) == [
        (False, "flow", Status.PENDING)]
    record = journal.get_workflow("a")
    assert record is not None and record.name == "flow" and record.created_ms == 1
    assert record.trace_context is None


def test_a_runs_trace_context_is_kept(journal: Journal) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    journal.create_workflows([new("t", trace_context=parent)], 1)
    record = journal.get_workflow("t")
    assert record is not None and record.trace_context == parent


def test_steps_round_trip_and_are_unique_per_number(journal: Journal) -> None:
    journal.create_workflows([new("a")], 1)
    journal.record_step(step("a", 1, output={"x": (1, 2)}))
    journal.record_step(step("a", 2, "t", StepKind.TRANSACTION))
    loaded = journal.load_steps("a")
    assert sorted(loaded) == [1, 2] and codec.decode(loaded[1].output) == {"x": (1, 2)}
    with pytest.raises(JournalError, match="UNIQUE|unique|constraint"):
        journal.record_step(step("a", 1))


def test_finish_applies_only_to_pending_runs(journal: Journal) -> None:
    journal.create_workflows([new("a"), new("b")], 1)
    assert journal.cancel_workflow("b", 2) == ["b"]
    outcomes: list[tuple[object, bool]] = []
    both = threading.Event()

    def durable(error: BaseException | None, applied: bool) -> None:
        outcomes.append((error, applied))
        if len(outcomes) == 2:
            both.set()

    for wid in ("a", "b"):
        journal.finish_workflow(wid, Status.SUCCESS, codec.encode(1), None, 3,
                                on_durable=durable, urgent=True)
    assert both.wait(10)
    assert outcomes == [(None, True), (None, False)]
    assert [journal.get_workflow(w).status for w in ("a", "b")] == [  # type: ignore[union-attr]
        Status.SUCCESS, Status.CANCELLED]


def test_recovery_bookkeeping(journal: Journal) -> None:
    journal.create_workflows([new("a"), new("b")], 1)
    journal.record_step(step("a", 1))
    journal.register_executor(lease_ms=1000, now_ms=1)
    assert [r.workflow_id for r in journal.claim_runs(1)[1]] == ["a", "b"]  # creation order
    assert journal.pending_step_counts() == {"a": 1, "b": 0}
    assert journal.note_recoveries([("a", 1), ("b", 0)], 2) == [1, 1]
    assert journal.note_recoveries([("a", 1), ("b", 0)], 3) == [2, 2]
    assert journal.note_recoveries([("a", 2)], 4) == [1]
    journal.park_workflow("b", 5)
    assert journal.get_workflow("b").status is Status.PARKED  # type: ignore[union-attr]
    assert journal.resume_workflow("b", 6).status is Status.PENDING


def test_a_look_for_runs_to_take_over_claims_only_what_no_live_executor_owns(
        journal: Journal) -> None:
    """claim_runs(if_any=True), the lease keeper's look every second: it reads first (by the
    index of PENDING runs' owners: a Kafka consumer may keep 20,000 runs PENDING) and claims
    only runs no live executor owns (unowned, of a stopped or expired executor, of one whose
    row is gone) of its app version or none, or expires an executor whose lease ran out."""
    def sql(statement: str) -> None:
        cast(Any, journal).committer.write(lambda conn: conn.execute(statement))

    def leave(workflow_id: str, owner: str, version: str = "NULL") -> None:  # as others left it
        journal.create_workflows([new(workflow_id)], 3)
        sql(f"UPDATE eoflow_workflows SET executor_id = {owner}, app_version = {version} "
            f"WHERE workflow_id = '{workflow_id}'")

    def look() -> tuple[list[str], list[str]]:
        expired, runs = journal.claim_runs(4, if_any=True)
        return expired, [run.workflow_id for run in runs]

    other = journal.register_executor(lease_ms=60_000, now_ms=1)
    journal.create_workflows([new("theirs")], 1)
    journal.register_executor(lease_ms=60_000, now_ms=2, app_version="v2")
    journal.create_workflows([new("mine")], 2)
    assert look() == ([], [])  # a live executor's run, and its own
    sql(f"UPDATE eoflow_executors SET status = 'STOPPED' WHERE executor_id = '{other}'")
    assert look() == ([], ["theirs"])
    leave("of-a-gone-row", "'gone'")
    assert look() == ([], ["of-a-gone-row"])
    leave("unowned", "NULL", "'v2'")
    assert look() == ([], ["unowned"])
    leave("unowned-v1", "NULL", "'v1'")
    leave("gone-v1", "'gone'", "'v1'")
    assert look() == ([], [])  # another version's: for an engine of that version
    me = journal.executor_id
    assert cast(Any, journal)._count("anything_to_claim", (me, 4)) == 0  # nor a write tried
    sql("INSERT INTO eoflow_executors (executor_id, host, pid, started_ms, heartbeat_ms, "
        "lease_ms, status) VALUES ('lapsed', 'h', 1, 1, 1, 1, 'ALIVE')")
    assert look() == (["lapsed"], [])


def test_runs_of_a_partitions_lanes_held_by_others_are_counted(journal: Journal) -> None:
    """What a newly assigned partition's runs wait for (kafka/lanes.py): PENDING runs of its
    lane and its keys' lanes that this executor does not own (another's, or nobody's)."""
    other = journal.register_executor(lease_ms=60_000, now_ms=1)
    journal.create_workflows([new("o-1", lane="P"), new("o-2", lane="P:key:ab"),
                              new("o-3", lane="P2"), new("o-4", lane="Q:key:P"),
                              new("o-done", lane="P")], 1)
    journal.register_executor(lease_ms=60_000, now_ms=2)
    journal.create_workflows([new("m-1", lane="P"), new("m-2", lane="P:key:cd")], 2)
    assert other != journal.executor_id
    assert journal.foreign_lane_runs("P") == 3  # o-1, o-2 and o-done
    finished = threading.Event()
    journal.finish_workflow("o-done", Status.SUCCESS, None, None, 3,
                            on_durable=lambda error, applied: finished.set(), urgent=True)
    assert finished.wait(5)
    cast(Any, journal).committer.write(lambda conn: conn.execute(
        "UPDATE eoflow_workflows SET executor_id = NULL WHERE workflow_id = 'o-1'"))
    assert journal.foreign_lane_runs("P") == 2  # nobody's counts too
    assert journal.foreign_lane_runs("P2") == 1
    assert journal.foreign_lane_runs("Q") == 1


def test_pending_runs_with_a_lane_in_creation_order(journal: Journal) -> None:
    """What a takeover reads to keep a lane's order (engine/heldlanes.py): the PENDING runs of
    the lanes asked for, oldest first, each with whether this executor owns it."""
    journal.register_executor(lease_ms=60_000, now_ms=1)
    journal.create_workflows([new("z-old", lane="L"), new("m-other", lane="M")], 1)
    journal.create_workflows([new("a-free", lane="L"), new("no-lane"), new("n-next", lane="N"),
                              new("l-key", lane="L:key:k")], 2)
    journal.register_executor(lease_ms=60_000, now_ms=2)  # a second executor: the runs above
    journal.create_workflows([new("b-mine", lane="L")], 3)  # are another's, this one its own
    finished = threading.Event()
    journal.finish_workflow("m-other", Status.SUCCESS, None, None, 4,
                            on_durable=lambda error, applied: finished.set(), urgent=True)
    assert finished.wait(5)
    assert journal.pending_lane_order(["L"]) == [
        ("z-old", "L", False), ("a-free", "L", False), ("b-mine", "L", True)]
    assert journal.pending_lane_order(["N", "M", "L"]) == [
        ("z-old", "L", False), ("a-free", "L", False), ("n-next", "N", False),
        ("b-mine", "L", True)]
    assert journal.pending_lane_order(["L:key:k"]) == [("l-key", "L:key:k", False)]
    assert journal.pending_lane_order([]) == []


def test_fork_copies_steps_before_a_number(journal: Journal) -> None:
    journal.create_workflows([new("a")], 1)
    for number in (1, 2, 3):
        journal.record_step(step("a", number))
    forked = journal.fork_workflow("a", 3, "a2", 9)
    assert (forked.name, forked.status, forked.created_ms) == ("flow", Status.PENDING, 9)
    assert sorted(journal.load_steps("a2")) == [1, 2]
    with pytest.raises(WorkflowConflictError):
        journal.fork_workflow("a", 3, "a2", 9)
    with pytest.raises(WorkflowStateError):
        journal.fork_workflow("a", 0, "a3", 9)
    with pytest.raises(WorkflowNotFoundError):
        journal.fork_workflow("nobody", 1, "a4", 9)


def test_cancel_reaches_live_descendants_only(journal: Journal) -> None:
    journal.create_workflows([new("p"), new("c1", parent_id="p"), new("c2", parent_id="p"),
                              new("g", parent_id="c1")], 1)
    journal.finish_workflow("c2", Status.SUCCESS, codec.encode(1), None, 2, urgent=True)
    journal.record_step(step("p", 1))  # a write after the finish: the finish is durable
    assert sorted(journal.cancel_workflow("p", 3)) == ["c1", "g", "p"]
    assert [journal.get_workflow(w).status for w in ("p", "c1", "c2", "g")] == [  # type: ignore[union-attr]
        Status.CANCELLED, Status.CANCELLED, Status.SUCCESS, Status.CANCELLED]
    with pytest.raises(WorkflowStateError, match="CANCELLED"):
        journal.cancel_workflow("p", 4)
    with pytest.raises(WorkflowNotFoundError):
        journal.cancel_workflow("nobody", 4)
    with pytest.raises(WorkflowStateError, match="SUCCESS"):
        journal.resume_workflow("c2", 4)


def test_resume_and_fork_start_the_timeout_again(journal: Journal) -> None:
    # A run's timeout is journaled with it, so that a resume from the CLI (which has no app
    # loaded to ask) gives the run a new deadline instead of none.
    journal.create_workflows([new("t", timeout_ms=60_000, deadline_ms=61_000),
                              new("free")], 1)
    journal.cancel_workflow("t", 2)
    journal.cancel_workflow("free", 2)
    assert journal.resume_workflow("t", 500_000).deadline_ms == 560_000
    assert journal.resume_workflow("free", 500_000).deadline_ms is None
    assert journal.fork_workflow("t", 1, "t2", 700_000).deadline_ms == 760_000


def test_messages_are_taken_once_in_order(journal: Journal) -> None:
    journal.create_workflows([new("dest")], 1)
    with pytest.raises(WorkflowNotFoundError):
        journal.send_message("nobody", "t", codec.encode(1), 1)
    for n in (1, 2):
        journal.send_message("dest", "t", codec.encode(n), 1)
    first = journal.take_message("dest", "t", step("dest", 1, "eoflow.recv", StepKind.RECV))
    second = journal.take_message("dest", "t", step("dest", 2, "eoflow.recv", StepKind.RECV))
    assert [codec.decode(first), codec.decode(second)] == [1, 2]  # type: ignore[arg-type]
    assert journal.take_message("dest", "t", step("dest", 3, "eoflow.recv",
                                                  StepKind.RECV)) is None
    assert sorted(journal.load_steps("dest")) == [1, 2]


def test_events_and_queues(journal: Journal) -> None:
    journal.create_workflows([new("p")], 1)
    journal.set_event("p", "k", codec.encode("v1"), 1, step("p", 1, "e", StepKind.SET_EVENT))
    journal.set_event("p", "k", codec.encode("v2"), 2, step("p", 2, "e", StepKind.SET_EVENT))
    assert codec.decode(journal.get_event("p", "k")) == "v2"  # type: ignore[arg-type]
    journal.create_workflows([new(f"q{i}", status=Status.ENQUEUED, queue="q", priority=i % 2)
                              for i in range(4)], 1)
    journal.create_workflows([new("later", status=Status.ENQUEUED, queue="q",
                                  not_before_ms=100)], 1)
    assert journal.queue_depths() == {"q": 5}
    assert [w for w, _, _ in journal.dequeue("q", 10, True, 3)] == ["q0", "q2", "q1"]
    assert journal.queue_running("q") == 3
    assert journal.queue_depths() == {"q": 2}
    assert journal.queue_next_due("q", 10) == 100
    # Each comes with the moment it was ready (for the queue's wait time).
    assert journal.dequeue("q", 200, False, 10) == [("q3", "flow", 1), ("later", "flow", 100)]
    assert journal.queue_depths() == {}
    journal.create_workflows([new("d1", status=Status.ENQUEUED, queue="q", dedup_id="x")], 1)
    with pytest.raises(DedupError):
        journal.create_workflows([new("d2", status=Status.ENQUEUED, queue="q",
                                      dedup_id="x")], 1)


def test_quarantine_and_requests(journal: Journal) -> None:
    key = KafkaKey("kafka:t:0:5:g", "g", "t", 0, 5)
    journal.quarantine(key, "h", b"k", b"v", "[]", 7, codec.encode_error(ValueError("x")), 3,
                       8)
    journal.quarantine(key, "h", b"k", b"v", "[]", 7, codec.encode_error(ValueError("x")), 3,
                       9)  # twice: one record
    record = journal.get_quarantined(key.key)
    assert record is not None and record.value == b"v" and record.attempts == 3
    journal.set_quarantine_status(key.key, "RETRIED")
    assert journal.get_quarantined(key.key).status == "RETRIED"  # type: ignore[union-attr]
    assert not journal.has_requests() and journal.take_requests() == []
    undecodable = KafkaKey("kafka:t:0:6:g", "g", "t", 0, 6)
    journal.quarantine(undecodable, "h", None, None, "[]", None, "{}", 0, 8, raw=b"\x00batch")
    kept = journal.get_quarantined(undecodable.key)
    assert kept is not None and kept.raw == b"\x00batch" and kept.attempts == 0
    assert record.raw is None


def test_kafka_messages_are_counted_once_however_often_delivered(journal: Journal) -> None:
    def keys(*offsets: int, partition: int = 0) -> list[KafkaKey]:
        return [KafkaKey(f"kafka:t:{partition}:{o}:g", "g", "t", partition, o) for o in offsets]

    journal.note_offsets(keys(0, 1, 2), 1)
    journal.note_offsets(keys(1, 2, 3, 4), 2)  # a redelivery from 1, then new ones
    journal.note_offsets(keys(0, 1), 3)  # a redelivery after a kill -9 and a restart
    journal.note_offsets(keys(7, partition=1), 3)
    journal.create_workflows([new("flush")], 4)  # a durable write after them: they are durable
    assert [(g, t, p, o, m) for g, t, p, o, m, _ in journal.kafka_offsets()] == [
        ("g", "t", 0, 4, 5), ("g", "t", 1, 7, 1)]


def test_keyed_batches_skip_what_the_budget_leaves_and_apply_it_later(journal: Journal) -> None:
    """A batch is tried at once; what its time budget leaves is SKIPPED, and its keys are not
    kept: the next attempt applies it (never takes it for a duplicate)."""
    from eoflow.journal.txstore import Applied

    applied: list[int] = []

    def work(i: int) -> Callable[[object], None]:
        def apply(conn: object) -> None:
            time.sleep(0.01)
            applied.append(i)
        return apply

    items = [(f"k{i}", "h", work(i), "lane") for i in range(12)]
    outcomes = [r.outcome for r in journal.tx.apply_keyed(items, 1, budget=0.03)]
    done = outcomes.count(Applied.APPLIED)
    assert 1 <= done < 12 and outcomes == [Applied.APPLIED] * done + [Applied.SKIPPED] * (12 - done)
    again = [r.outcome for r in journal.tx.apply_keyed(items[done:], 2)]
    assert again == [Applied.APPLIED] * (12 - done)
    assert applied == list(range(12))
    assert {r.outcome for r in journal.tx.apply_keyed(items, 3)} == {Applied.DUPLICATE}


def test_a_failed_item_rolls_back_alone_and_stops_its_lane(journal: Journal) -> None:
    from eoflow.journal.txstore import Applied

    def fail(conn: object) -> None:
        raise ValueError("poison")

    def ok(conn: object) -> None:
        pass

    items = [("a1", "h", ok, "a"), ("a2", "h", fail, "a"), ("b1", "h", ok, "b"),
             ("a3", "h", ok, "a"), ("b1", "h", ok, "b")]
    results = journal.tx.apply_keyed(items, 1)
    assert [r.outcome for r in results] == [Applied.APPLIED, Applied.FAILED, Applied.APPLIED,
                                            Applied.SKIPPED, Applied.DUPLICATE]
    assert isinstance(results[1].error, ValueError)
    retried = journal.tx.apply_keyed([("a2", "h", ok, "a"), ("a3", "h", ok, "a")], 2,
                                     at_once=False)
    assert [r.outcome for r in retried] == [Applied.APPLIED, Applied.APPLIED]


def test_a_handler_that_swallows_a_database_error_fails_alone(journal: Journal) -> None:
    """SQLite goes on after a failed statement; PostgreSQL aborts the transaction. Either way
    the batch commits: on PostgreSQL the handler that went on is that message's failure (it
    would otherwise leave the whole batch unusable, retried for ever)."""
    from eoflow.errors import TransactionAbortedError
    from eoflow.journal.txstore import Applied

    def swallow(conn: Any) -> None:
        try:
            conn.execute("SELECT * FROM no_such_table")
        except Exception:
            pass

    def ok(conn: object) -> None:
        pass

    for at_once in (True, False):
        items = [(f"a{at_once}", "h", ok, "a"), (f"b{at_once}", "h", swallow, "b"),
                 (f"c{at_once}", "h", ok, "c")]
        results = journal.tx.apply_keyed(items, 1, at_once=at_once)
        if isinstance(journal, SQLiteJournal):
            assert [r.outcome for r in results] == [Applied.APPLIED] * 3
        else:
            assert [r.outcome for r in results] == [Applied.APPLIED, Applied.FAILED,
                                                    Applied.APPLIED]
            assert isinstance(results[1].error, TransactionAbortedError)
            assert "db().transaction()" in str(results[1].error)
    # The failed message's key was rolled back with it: it is applied when retried.
    again = journal.tx.apply_keyed([("bTrue", "h", ok, "b"), ("aTrue", "h", ok, "a")], 2)
    assert [r.outcome for r in again] == [
        Applied.DUPLICATE if isinstance(journal, SQLiteJournal) else Applied.APPLIED,
        Applied.DUPLICATE]


def test_postgres_journals_opened_at_once_migrate_once(pg_url: str) -> None:
    """Two processes starting together: the migration runs under an advisory lock, so one
    creates the schema and the other finds it (then one owns the journal)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    at = time.time() + 3  # every process imports first, then all open at this instant
    with context.Pool(4) as pool:
        outcomes = pool.map_async(_open_postgres, [(pg_url, at)] * 4).get(timeout=60)
    assert sorted(outcomes, key=str)[-1] == "owner" and outcomes.count("owner") >= 1
    assert set(outcomes) <= {"owner", "locked"}, outcomes


def _open_postgres(job: tuple[str, float]) -> str:
    from eoflow.errors import JournalLockedError
    from eoflow.journal.postgres import PostgresJournal

    url, at = job
    time.sleep(max(0.0, at - time.time()))
    try:
        journal = PostgresJournal.open(url)
    except JournalLockedError:
        return "locked"
    time.sleep(0.5)  # hold it while the others try
    journal.close()
    return "owner"

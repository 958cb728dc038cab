"""The engine's public contract: start, call, handles, ids, conflicts, errors, transactions."""

from __future__ import annotations

import threading

import pytest

import eoflow
from eoflow import Engine, Status, step, transaction, workflow
from eoflow.errors import (
    ContextError,
    EngineClosedError,
    NoEngineError,
    SerializationError,
    WorkflowConflictError,
    WorkflowNotFoundError,
)
from eoflow.journal import codec
from tests.portable import app_sql

BACKENDS = ("sqlite", "postgres")  # each test that takes a journal runs on both

CALLS: dict[str, int] = {}


def count(name: str) -> None:
    CALLS[name] = CALLS.get(name, 0) + 1


@step()
def e_add_one(i: int) -> int:
    count("add_one")
    return i + 1


@step()
def e_double(x: int) -> int:
    return x * 2


@transaction()
def e_pay(order_id: str, amount: int) -> int:
    app_sql("CREATE TABLE IF NOT EXISTS payments(order_id TEXT PRIMARY KEY, amount INT)")
    app_sql("INSERT INTO payments VALUES (?, ?)", (order_id, amount))
    return amount


@workflow()
def e_math(i: int) -> int:
    return e_double(e_add_one(i))


@workflow()
def e_order(order: dict) -> int:
    e_add_one(order["amount"])
    return e_pay(order["id"], order["amount"])


@workflow()
def e_other(i: int) -> int:
    return i


@workflow()
def e_fails(message: str) -> None:
    raise KeyError(message)


@workflow()
def e_returns_object() -> object:
    return threading.Lock()


def payments(engine: Engine) -> list[tuple[str, int]]:
    return engine.runtime.txstore.committer.read(
        lambda conn: conn.execute("SELECT order_id, amount FROM payments ORDER BY 1").fetchall())


def test_direct_call_start_and_handles(engine: Engine) -> None:
    assert e_math(3) == 8
    handle = engine.start(e_math, 4, workflow_id="math-4")
    assert handle.workflow_id == "math-4"
    assert handle.result(timeout=10) == 10
    assert handle.status() is Status.SUCCESS
    assert engine.retrieve("math-4").result() == 10
    assert engine.run(e_math, 5) == 12


def test_set_workflow_id_names_the_next_call(engine: Engine) -> None:
    with eoflow.set_workflow_id("order-43"):
        assert e_order({"id": "o43", "amount": 7}) == 7
    record = engine.journal.get_workflow("order-43")
    assert record is not None and record.status is Status.SUCCESS and record.name == "e_order"


def test_same_id_never_runs_twice(engine: Engine) -> None:
    before = CALLS.get("add_one", 0)
    first = engine.start(e_order, {"id": "o42", "amount": 5}, workflow_id="order-42")
    second = engine.start(e_order, {"id": "o42", "amount": 5}, workflow_id="order-42")
    assert first.result(timeout=10) == second.result(timeout=10) == 5
    with eoflow.set_workflow_id("order-42"):
        assert e_order({"id": "o42", "amount": 5}) == 5
    assert CALLS["add_one"] - before == 1
    assert payments(engine) == [("o42", 5)]


def test_same_id_other_function_conflicts(engine: Engine) -> None:
    engine.run(e_math, 1, workflow_id="shared")
    with pytest.raises(WorkflowConflictError, match="'shared' already belongs to a run of"):
        engine.start(e_other, 1, workflow_id="shared")


def test_failed_workflow_raises_its_error_and_records_it(engine: Engine) -> None:
    handle = engine.start(e_fails, "missing", workflow_id="f1")
    with pytest.raises(KeyError, match="missing"):
        handle.result(timeout=10)
    assert handle.status() is Status.ERROR
    with pytest.raises(KeyError):  # replaying a finished run raises the recorded error
        engine.run(e_fails, "missing", workflow_id="f1")


def test_unserializable_result_and_inputs_are_rejected_by_name(engine: Engine) -> None:
    with pytest.raises(SerializationError, match="'e_returns_object'.*'lock'"):
        engine.run(e_returns_object)
    with pytest.raises(SerializationError, match="'e_other': cannot journal an input"):
        engine.start(e_other, object())


def test_workflow_without_engine_refuses_to_run() -> None:
    with pytest.raises(NoEngineError, match="no eoflow engine running"):
        e_math(1)


def test_step_outside_workflow_runs_plain() -> None:
    assert e_add_one(1) == 2


def test_db_outside_transaction_is_an_error(engine: Engine) -> None:
    with pytest.raises(ContextError, match="only available inside a @transaction.*on_start"):
        eoflow.db()


def test_transaction_outside_workflow_runs_once_unjournaled(engine: Engine) -> None:
    assert e_pay("plain", 3) == 3
    assert payments(engine) == [("plain", 3)]
    assert engine.journal.list_workflows() == []


def test_transaction_rolls_back_on_error(engine: Engine) -> None:
    e_pay("dup", 1)
    with pytest.raises(Exception, match="UNIQUE|unique constraint"):
        e_pay("dup", 2)
    assert payments(engine) == [("dup", 1)]


def test_transaction_in_workflow_is_recorded_in_the_same_file(engine: Engine) -> None:
    assert engine.run(e_order, {"id": "t1", "amount": 9}, workflow_id="t1") == 9
    steps = engine.journal.steps_of("t1")
    assert [(s.step, s.name, s.kind.value) for s in steps] == [
        (1, "e_add_one", "step"), (2, "e_pay", "transaction")]


@transaction()
def e_swallow(order_id: str) -> str:
    app_sql("CREATE TABLE IF NOT EXISTS payments(order_id TEXT PRIMARY KEY, amount INT)")
    app_sql("INSERT INTO payments VALUES (?, ?)", (order_id, 1))
    try:
        app_sql("INSERT INTO payments VALUES (?, ?)", (order_id, 2))
    except Exception:
        pass  # PostgreSQL has aborted the transaction by now; SQLite has not
    return "went on"


@workflow()
def e_swallowing(order_id: str) -> str:
    return e_swallow(order_id)


def test_a_transaction_that_swallows_a_database_error(engine: Engine) -> None:
    """On PostgreSQL the function's later work could not take effect: it is recorded as the
    transaction's failure, naming the fix, and the engine's next writes are unharmed."""
    handle = engine.start(e_swallowing, "s1", workflow_id="s1")
    if engine.journal.backend.name == "sqlite":
        assert handle.result() == "went on"
    else:
        with pytest.raises(Exception, match=r"caught a database error.*db\(\).transaction"):
            handle.result()
    assert engine.run(e_order, {"id": "after", "amount": 2}, workflow_id="after") == 2
    assert payments(engine) == (
        [("after", 2), ("s1", 1)] if engine.journal.backend.name == "sqlite" else [("after", 2)])


def test_app_db_holds_application_data(journal_path: str, tmp_path) -> None:
    app_db = str(tmp_path / "app.db")
    with Engine(journal=journal_path, app_db=app_db) as engine:
        assert engine.run(e_order, {"id": "a1", "amount": 4}, workflow_id="a1") == 4
        assert payments(engine) == [("a1", 4)]
        assert engine.journal.steps_of("a1")[1].name == "e_pay"
        out = engine.runtime.txstore.committer.read(
            lambda c: c.execute("SELECT workflow_id, step FROM eoflow_tx_outputs").fetchall())
        assert out == [("a1", 2)]


def test_closed_engine_refuses_work(journal_path: str) -> None:
    engine = Engine(journal=journal_path)
    engine.close()
    engine.close()  # idempotent
    with pytest.raises(EngineClosedError):
        engine.start(e_math, 1)


def test_retrieve_unknown_id(engine: Engine) -> None:
    with pytest.raises(WorkflowNotFoundError):
        engine.retrieve("nope")


def test_two_open_engines_need_an_explicit_choice(journal_path: str, tmp_path) -> None:
    with Engine(journal=journal_path) as first, Engine(journal=str(tmp_path / "b.db")) as second:
        outcome: list[object] = []

        def call_from_another_thread() -> None:  # no `with engine:` block applies there
            try:
                outcome.append(e_math(1))
            except ContextError as error:
                outcome.append(error)

        thread = threading.Thread(target=call_from_another_thread)
        thread.start()
        thread.join()
        assert isinstance(outcome[0], ContextError)
        assert "several eoflow engines" in str(outcome[0])
        assert first.run(e_math, 1) == 4 and second.run(e_math, 1) == 4
        with second:
            assert e_math(2) == 6


def test_start_many_and_hundreds_at_once(engine: Engine) -> None:
    handles = engine.start_many(e_math, [(i,) for i in range(300)])
    handles += [engine.start(e_math, i) for i in range(300, 400)]
    assert [h.result(timeout=60) for h in handles] == [(i + 1) * 2 for i in range(400)]
    assert engine.journal.count_by_status() == {"SUCCESS": 400}


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no words for this")


@workflow()
def e_raises_unprintable() -> int:
    raise Unprintable()


def test_an_error_whose_str_raises_still_ends_the_run(engine: Engine) -> None:
    handle = engine.start(e_raises_unprintable, workflow_id="unprintable")
    with pytest.raises(Unprintable):
        handle.result(timeout=10)
    record = engine.journal.get_workflow("unprintable")
    assert record is not None and record.status is Status.ERROR
    assert "Unprintable" in codec.error_summary(record.error or "")[1]


@workflow()
def e_exits() -> int:
    raise SystemExit(2)


def test_a_workflow_raising_system_exit_fails_instead_of_killing_its_worker(
        engine: Engine) -> None:
    from eoflow.errors import AbortedError

    with pytest.raises(AbortedError, match="raised SystemExit"):
        engine.start(e_exits, workflow_id="exits").result(timeout=10)
    assert engine.retrieve("exits").status() is Status.ERROR
    assert engine.start(e_math, 1).result(timeout=10) == engine.run(e_math, 1)  # pool works


@workflow()
def e_queued_cheaply(n: int) -> int:
    return n


def test_a_queued_run_costs_the_garbage_collector_one_object(tmp_path: object) -> None:
    """A Kafka consumer keeps up to 20,000 recorded runs queued in memory: each task waiting
    in the pool is one object the collector follows, not a closure and its cells (its full
    passes over the queued runs took 49 ms each, stopping every thread)."""
    import gc

    from eoflow.engine import runner
    from eoflow.engine.registry import definition_of
    from eoflow.journal.records import NewWorkflow

    with Engine(journal=f"{tmp_path}/cheap.db", workers=1) as engine:
        rt, definition = engine.runtime, definition_of(e_queued_cheaply)
        release = threading.Event()
        rt.pool.submit(lambda: release.wait(10), lane="cheap")  # the lane is busy meanwhile
        inputs = codec.encode({"args": [1], "kwargs": {}})
        runs = [(rt.runs.track(f"cheap-{n}"),
                 NewWorkflow(f"cheap-{n}", "e_queued_cheaply", inputs, 1)) for n in range(2000)]
        on_done = release.is_set  # any callable kept by the task
        gc.collect()
        before = len(gc.get_objects())
        for run, new in runs:
            runner.submit(rt, run, definition, new, "cheap", on_done)
        per_run = (len(gc.get_objects()) - before) / len(runs)
        release.set()
        assert per_run <= 1.1, f"{per_run:.1f} objects tracked per queued run"

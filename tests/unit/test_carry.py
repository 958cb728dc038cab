"""A step's record rides in the commit of the @transaction after it (one commit for both), and
is written, durably, before anything else the workflow does."""

from __future__ import annotations

from typing import Any

import pytest

import eoflow
from eoflow import Engine, step, transaction, workflow
from eoflow.journal.reader import SQLiteReader
from eoflow.journal.records import StepKind
from eoflow.journal.sqlite import SQLiteJournal

SEEN: dict[str, Any] = {}


@step()
def carry_parse(x: int) -> int:
    return x * 10


@transaction()
def carry_store(x: int) -> int:
    eoflow.db().execute("CREATE TABLE IF NOT EXISTS carried (x)")
    eoflow.db().execute("INSERT INTO carried VALUES (?)", (x,))
    return x + 1


@step()
def carry_look(path: str, workflow_id: str) -> int:
    reader = SQLiteReader(path)  # sees committed (durable) records only
    try:
        SEEN["steps"] = [s.step for s in reader.steps_of(workflow_id)]
    finally:
        reader.close()
    return 0


@workflow()
def carry_flow(x: int, path: str) -> int:
    stored = carry_store(carry_parse(x))
    carry_parse(stored)
    return carry_look(path, eoflow.workflow_id()) + stored


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The step numbers written on their own (not carried by a transaction)."""
    written: list[int] = []
    own = SQLiteJournal.record_step

    def counted(self: SQLiteJournal, record: Any) -> None:
        written.append(record.step)
        own(self, record)

    monkeypatch.setattr(SQLiteJournal, "record_step", counted)
    return written


def test_a_step_rides_in_the_commit_of_the_transaction_after_it(
        engine: Engine, journal_path: str, writes: list[int]) -> None:
    handle = engine.start(carry_flow, 4, journal_path)
    assert handle.result() == 41
    # Step 1 went in the transaction's commit; step 3, followed by a step, went on its own,
    # durable before step 4's code ran; step 4, the last, before the outcome.
    assert writes == [3, 4]
    assert SEEN["steps"] == [1, 2, 3]
    kinds = [s.kind for s in engine.journal.steps_of(handle.workflow_id)]
    assert kinds == [StepKind.STEP, StepKind.TRANSACTION, StepKind.STEP, StepKind.STEP]


def test_with_an_app_db_the_step_is_durable_before_the_transaction(
        tmp_path: Any, writes: list[int]) -> None:
    path = str(tmp_path / "j.db")
    with Engine(journal=path, app_db=str(tmp_path / "app.db")) as engine:
        assert engine.start(carry_flow, 4, path).result() == 41
    # The transaction commits in another file: its step's record cannot ride in it.
    assert writes[:2] == [1, 2] and writes[2:] == [3, 4]

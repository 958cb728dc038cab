"""A journal write that fails (disk full, the write lock held elsewhere) strands no run: the
run keeps its lane and is tried again with backoff until the journal writes, in order."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from eoflow import Engine, Status, step, workflow
from eoflow.engine import starts
from eoflow.engine.registry import definition_of
from eoflow.errors import JournalError

ORDER: list[str] = []


@step()
def jf_mark(name: str) -> str:
    ORDER.append(name)
    return name


@workflow()
def jf_run(name: str) -> str:
    return jf_mark(name)


def _failing(engine: Engine, monkeypatch: pytest.MonkeyPatch, method: str, times: int,
             wid: str) -> list[int]:
    """Make the journal's `method` fail `times` times for run `wid`."""
    journal: Any = engine.journal
    real = getattr(journal, method)
    failures = [0]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        first = args[0]
        target = first if isinstance(first, str) else getattr(first, "workflow_id", None)
        if target == wid and failures[0] < times:
            failures[0] += 1
            error = JournalError(engine.path, "database or disk is full (injected)")
            if "on_durable" in kwargs:  # an outcome: its failure arrives by the callback
                kwargs["on_durable"](error, False)
                return None
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(journal, method, flaky)
    return failures


def _launch(engine: Engine, names: list[str], lane: str) -> list[str]:
    definition = definition_of(jf_run)
    handles = starts.launch(engine.runtime, [(definition, f"jf-{n}", (n,), {}) for n in names],
                            lane=lane)
    return [h.workflow_id for h in handles]


def test_a_failed_step_record_is_tried_again_and_its_lane_waits(
        engine: Engine, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    ORDER.clear()
    failures = _failing(engine, monkeypatch, "record_step", 3, "jf-a")
    ids = _launch(engine, ["a", "b", "c"], "kafka:t:0:g")
    assert [engine.retrieve(w).result(timeout=20) for w in ids] == ["a", "b", "c"]
    assert failures == [3]
    # The step of a ran again after each failure (a step is at-least-once), and b and c
    # waited for a: no later run of the lane went first.
    assert ORDER == ["a", "a", "a", "a", "b", "c"]
    retries = [r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING and "trying it again" in r.getMessage()]
    assert len(retries) == 3 and "lane kafka:t:0:g waits" in retries[0]
    assert all(engine.retrieve(w).status() is Status.SUCCESS for w in ids)


def test_a_failed_outcome_record_is_tried_again(engine: Engine,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ORDER.clear()
    failures = _failing(engine, monkeypatch, "finish_workflow", 2, "jf-x")
    handle = engine.start(jf_run, "x", workflow_id="jf-x")
    assert handle.result(timeout=20) == "x"
    assert failures == [2] and ORDER == ["x"]  # replayed: the step did not run again
    assert engine.retrieve("jf-x").status() is Status.SUCCESS

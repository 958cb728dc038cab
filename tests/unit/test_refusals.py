"""What a workflow observes is journaled, refusals included, so replay takes the same path."""

from __future__ import annotations

import threading

import eoflow
from eoflow import Engine, Status, step, workflow
from eoflow.errors import DedupError
from eoflow.journal import admin

BACKENDS = ("sqlite", "postgres")  # each test that takes a journal runs on both

RF_QUEUE = eoflow.Queue("rf-queue")
GATE = threading.Event()
ENTERED = threading.Event()


@workflow()
def rf_job() -> int:
    return 1


@step()
def rf_wait() -> int:
    ENTERED.set()
    GATE.wait(10)
    return 0


@step()
def rf_echo(value: str) -> str:
    return value


@workflow()
def rf_enqueuer() -> str:
    try:
        RF_QUEUE.enqueue(rf_job, dedup_id="only-one")
        seen = "enqueued"
    except DedupError:
        seen = "refused"
    rf_wait()
    return rf_echo(seen)  # the boundary before this step is where shutdown stops it


def test_a_refused_enqueue_replays_as_refused(journal_path: str) -> None:
    GATE.clear()
    ENTERED.clear()
    engine = Engine(journal=journal_path, grace_period=5)
    engine.queues.stop()  # the first run stays ENQUEUED: its dedup id stays live
    holder = RF_QUEUE.enqueue(rf_job, dedup_id="only-one")
    engine.start(rf_enqueuer, workflow_id="e1")
    assert ENTERED.wait(10)
    closer = threading.Thread(target=engine.close)
    closer.start()
    run = engine.runtime.runs.get("e1")
    for _ in range(2000):
        if run is None or getattr(run.context, "stop_reason", None):
            break
        threading.Event().wait(0.005)
    GATE.set()
    closer.join(10)
    admin.cancel(journal_path, holder.workflow_id)  # the dedup id is free now
    with Engine(journal=journal_path) as engine:  # e1 replays its enqueue
        assert engine.retrieve("e1").result(timeout=10) == "refused"
        children = [r for r in engine.journal.list_workflows(limit=10) if r.parent_id == "e1"]
        assert children == []
        assert engine.retrieve(holder.workflow_id).status() is Status.CANCELLED

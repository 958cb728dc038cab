"""Journal writes behind the durable primitives: messages, events, sleeps, queues.

Plain functions on a connection inside an open transaction, as operator.py's are: the SQLite
journal runs each through its group committer (see the thin methods of SQLiteJournal), and the
lookups the primitives need are queries of SQLiteReader.

Each operation that a workflow performs as a step writes its effect and its step record in one
transaction, so a crash leaves either both or neither (a message is consumed exactly when its
recv is recorded; an event is published exactly when its set_event is recorded).
"""

from __future__ import annotations

from eoflow.errors import DedupError, WorkflowNotFoundError
from eoflow.journal.backend import Backend, Conn
from eoflow.journal.records import NewWorkflow, Status, StepRecord
from eoflow.journal.savepoint import in_savepoint
from eoflow.journal.sql import Q


def insert_run(conn: Conn, backend: Backend, run: NewWorkflow, now_ms: int,
               executor_id: str | None, app_version: str | None = None) -> bool:
    """Insert `run` unless its id exists; True if it was inserted. A PENDING run is owned by
    `executor_id` (None: by no one yet, for any executor to claim). A live run of its queue
    holding its dedup id raises DedupError, naming that run."""
    params = (run.workflow_id, run.name, run.status.value, backend.stored_inputs(run.inputs),
              run.created_ms, now_ms, run.parent_id, run.queue, run.lane, run.deadline_ms,
              run.priority, run.dedup_id, run.not_before_ms, run.timeout_ms,
              executor_id if run.status is Status.PENDING else None, app_version,
              run.trace_context)

    def insert() -> bool:
        conn.execute(Q["insert_workflow"], params)
        return bool(conn.changes())

    if run.dedup_id is None:
        return insert()
    # A duplicate breaks the dedup index: roll back to here (PostgreSQL refuses any further
    # statement in a failed transaction), then name the live run that holds the id.
    try:
        return in_savepoint(conn, backend, "eoflow_dedup", insert)
    except backend.errors as error:
        if not backend.unique_violation(error):
            raise
        existing = conn.execute(Q["live_dedup"], (run.queue, run.dedup_id)).fetchone()
        raise DedupError(str(run.queue), run.dedup_id,
                         existing[0] if existing else "?") from None


def insert_step(conn: Conn, record: StepRecord) -> None:
    conn.execute(Q["insert_step"], (
        record.workflow_id, record.step, record.name, record.kind.value, record.output,
        record.error, record.attempts, record.started_ms, record.ended_ms,
    ))


# -- messages ---------------------------------------------------------------------------------

def send_message(conn: Conn, destination: str, topic: str, message: str,
                 now_ms: int, step: StepRecord | None) -> None:
    """Queue `message` for `destination` (which must exist), with the sender's step."""
    if conn.execute(Q["workflow_name_status"], (destination,)).fetchone() is None:
        raise WorkflowNotFoundError(destination)
    conn.execute(Q["insert_message"], (destination, topic, message, now_ms))
    if step is not None:
        insert_step(conn, step)


def take_message(conn: Conn, destination: str, topic: str,
                 step: StepRecord) -> str | None:
    """Consume the oldest message for (destination, topic) and record `step` with it as
    output; None (and nothing recorded) when there is none."""
    row = conn.execute(Q["first_message"], (destination, topic)).fetchone()
    if row is None:
        return None
    seq, message = row
    conn.execute(Q["delete_message"], (seq,))
    insert_step(conn, StepRecord(step.workflow_id, step.step, step.name, step.kind,
                                 message, None, 1, step.started_ms, step.ended_ms))
    return str(message)


# -- events -----------------------------------------------------------------------------------

def set_event(conn: Conn, workflow_id: str, key: str, value: str, now_ms: int,
              step: StepRecord | None) -> None:
    """Publish an event, with the step that did it (none from inside a step: the step's own
    record is the one replay uses)."""
    conn.execute(Q["upsert_event"], (workflow_id, key, value, now_ms))
    if step is not None:
        insert_step(conn, step)


# -- sleeping ---------------------------------------------------------------------------------

def set_not_before(conn: Conn, workflow_id: str, not_before_ms: int | None) -> None:
    """A hint for recovery: the run sleeps until then (its SLEEP step is the truth)."""
    conn.execute(Q["set_not_before"], (not_before_ms, workflow_id))


# -- queues -----------------------------------------------------------------------------------

def dequeue(conn: Conn, queue: str, now_ms: int, by_priority: bool, limit: int,
            concurrency: int | None = None, executor_id: str | None = None,
            rate: tuple[int, int] | None = None) -> list[tuple[str, str, int]]:
    """Move up to `limit` ready runs of `queue` from ENQUEUED to PENDING (owned by
    `executor_id`), in queue order, keeping at most `concurrency` of the queue PENDING and at
    most `rate` = (n, period_ms) dequeued per period; returns (workflow id, name, ready
    since, in ms) of each. Counted in this transaction, under the journal's write lock:
    across engines."""
    if concurrency is not None:
        running = int(conn.execute(Q["queue_running"], (queue,)).fetchone()[0])
        limit = min(limit, concurrency - running)
    if rate is not None and limit > 0:
        started = conn.execute(Q["queue_started_since"], (queue, now_ms - rate[1])).fetchone()
        limit = min(limit, rate[0] - int(started[0]))
    if limit <= 0:
        return []
    rows = conn.execute(Q["queue_ready"],
                        (queue, now_ms, by_priority, limit, executor_id)).fetchall()
    for workflow_id, _, _ in rows:
        conn.execute(Q["dequeue"], (now_ms, executor_id, workflow_id))
    return [(str(w), str(n), int(r)) for w, n, r in rows]

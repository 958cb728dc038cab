"""Operator actions as journal changes: cancel, resume, fork, and a quarantine retry request.

This is the one implementation of each change. It runs inside a transaction on whatever
connection the caller holds: the engine's writer (`SQLiteJournal`), or a short connection of the
CLI's own while an engine may be running (`admin`). With `notify`, each change also leaves a
request row, which a running engine picks up within its poll interval to act on the runs it
holds in memory (stop a cancelled one, start a resumed one).
"""

from __future__ import annotations

from eoflow.errors import (
    QuarantineError,
    WorkflowConflictError,
    WorkflowNotFoundError,
    WorkflowStateError,
)
from eoflow.journal import codec
from eoflow.journal.backend import Conn
from eoflow.journal.reader import workflow_from_row
from eoflow.journal.records import Action, Status, WorkflowRecord
from eoflow.journal.sql import Q

CANCELLABLE = (Status.PENDING, Status.ENQUEUED)
RESUMABLE = (Status.CANCELLED, Status.PARKED, Status.ENQUEUED, Status.PENDING, Status.ERROR)


def _get(conn: Conn, workflow_id: str) -> WorkflowRecord:
    row = conn.execute(Q["get_workflow"], (workflow_id,)).fetchone()
    if row is None:
        raise WorkflowNotFoundError(workflow_id)
    return workflow_from_row(row)


def _request(conn: Conn, workflow_id: str, action: Action, now_ms: int) -> None:
    conn.execute(Q["insert_request"], (workflow_id, action.value, now_ms))


def cancel(conn: Conn, workflow_id: str, now_ms: int, notify: bool) -> list[str]:
    """Mark a live run and its live descendants CANCELLED; returns their ids, the run first."""
    status = _get(conn, workflow_id).status
    if status not in CANCELLABLE:
        raise WorkflowStateError(workflow_id, status.value, "cancel")
    cancelled: list[str] = []
    pending = [workflow_id]
    while pending:
        current = pending.pop()
        conn.execute(Q["set_status"], (Status.CANCELLED.value, now_ms, current))
        if notify:
            _request(conn, current, Action.CANCEL, now_ms)
        cancelled.append(current)
        pending.extend(str(row[0]) for row in conn.execute(Q["live_children"], (current,)))
    return cancelled


def resume(conn: Conn, workflow_id: str, now_ms: int, notify: bool
           ) -> WorkflowRecord:
    """Make a cancelled, parked, failed or queued run PENDING again, its timeout starting
    anew. A failed (ERROR) run's failed step is forgotten, so that it runs again."""
    record = _get(conn, workflow_id)
    if record.status not in RESUMABLE:
        raise WorkflowStateError(workflow_id, record.status.value, "resume")
    if record.status is Status.ERROR:  # after a fix: the failed step runs again, from there
        last = conn.execute(Q["last_step"], (workflow_id,)).fetchone()
        if last is not None and last[1]:
            conn.execute(Q["forget_failed_step"], (workflow_id, last[0]))
            conn.execute(Q["forget_failed_tx_output"], (workflow_id, last[0]))
    conn.execute(Q["resume_workflow"], (now_ms, workflow_id))
    if notify:
        _request(conn, workflow_id, Action.RESUME, now_ms)
    return _get(conn, workflow_id)


def release(conn: Conn, workflow_id: str | None = None, version: str | None = None) -> int:
    """Let any version of the app run `workflow_id`, or every live run of `version`: their
    recorded version is cleared (an engine of any version claims a PENDING one within a
    second, dequeues an ENQUEUED one). Returns how many runs."""
    if workflow_id is not None:
        _get(conn, workflow_id)  # WorkflowNotFoundError
        conn.execute(Q["release_run"], (workflow_id,))
    else:
        conn.execute(Q["release_version"], (version,))
    return conn.changes()


def fork(conn: Conn, workflow_id: str, from_step: int, new_id: str, now_ms: int,
         notify: bool) -> WorkflowRecord:
    """Create run `new_id` of the same workflow and inputs, with copies of the recorded steps
    before `from_step`; it runs from there when an engine picks it up."""
    source = _get(conn, workflow_id)
    last = conn.execute(Q["last_step"], (workflow_id,)).fetchone()
    steps = int(last[0]) if last is not None else 0
    if not 1 <= from_step <= steps + 1:
        raise WorkflowStateError(workflow_id, f"{source.status.value} with {steps} step(s)",
                                 f"fork from step {from_step} (use 1 to {steps + 1})")
    conn.execute(Q["fork_workflow"], (new_id, workflow_id, now_ms))
    if not conn.changes():
        taken = _get(conn, new_id)
        raise WorkflowConflictError(new_id, taken.name, source.name,
                                    "fork with another --new-id, or none for a random one")
    conn.execute(Q["copy_steps_before"], (new_id, workflow_id, from_step))
    _republish_events(conn, workflow_id, new_id, from_step, now_ms)
    if notify:
        _request(conn, new_id, Action.RESUME, now_ms)
    return _get(conn, new_id)


def _republish_events(conn: Conn, source: str, target: str, before_step: int,
                      now_ms: int) -> None:
    """Give a fork the events its reused steps published, the last value of each key."""
    for (output,) in conn.execute(Q["event_steps_before"], (source, before_step)):
        recorded = codec.decode(output)
        if isinstance(recorded, dict):  # {"key", "value"}: the value it published then
            key, value = recorded["key"], recorded["value"]
        else:  # older journals recorded the key alone: take the source's latest value
            key = recorded
            row = conn.execute(Q["get_event"], (source, key)).fetchone()
            if row is None:
                continue
            value = row[0]
        conn.execute(Q["upsert_event"], (target, key, value, now_ms))


def request_quarantine_retry(conn: Conn, key: str, now_ms: int) -> None:
    """Ask the running engine (or the next one) to apply a quarantined message again."""
    row = conn.execute(Q["get_quarantine"], (key,)).fetchone()
    if row is None:
        raise QuarantineError(key, "no quarantined message has this key")
    refusal = retry_refusal(key, status=str(row[13]), attempts=int(row[11]))
    if refusal is not None:
        raise refusal
    _request(conn, key, Action.RETRY_QUARANTINED, now_ms)


def retry_refusal(key: str, *, status: str, attempts: int) -> QuarantineError | None:
    """Why a quarantined message cannot be applied again, if it cannot."""
    if status == "DROPPED":
        return QuarantineError(key, "was dropped by an operator; it is never applied")
    if attempts == 0:  # the consumer could not even decode it
        return QuarantineError(key, "the Kafka client could not decode this record, so it "
                                    "cannot be applied (its raw bytes are kept: `eoflow "
                                    "quarantine list --json`); drop it with `eoflow quarantine "
                                    "drop KEY`")
    return None


def drop_quarantined(conn: Conn, key: str) -> None:
    """An operator gives up on a quarantined message: it is never applied, and retention
    forgets it after its window like a retried one."""
    row = conn.execute(Q["get_quarantine"], (key,)).fetchone()
    if row is None:
        raise QuarantineError(key, "no quarantined message has this key")
    conn.execute(Q["drop_quarantined"], (key,))
    if not conn.changes():
        raise QuarantineError(key, f"is {row[13]}, not QUARANTINED: nothing to drop")


def request_quarantine_retries(conn: Conn, handler: str | None, topic: str | None,
                               now_ms: int) -> list[str]:
    """Ask for every quarantined message (of `handler`, of `topic`) to be applied again, in
    partition and offset order; returns their keys."""
    keys = [str(row[0]) for row in conn.execute(Q["quarantined_keys"], (handler, topic))]
    for key in keys:
        _request(conn, key, Action.RETRY_QUARANTINED, now_ms)
    return keys


def restart_topic(conn: Conn, group_id: str, topic: str, now_ms: int) -> int:
    """Start a new incarnation of `topic` for `group_id`, after the topic was recreated (its
    offsets start again from 0): its messages get keys that cannot collide with the old
    incarnation's, and the next batch records the topic's new id. Returns the incarnation."""
    row = conn.execute(Q["next_kafka_incarnation"], (group_id, topic, now_ms)).fetchone()
    assert row is not None, "INSERT ... RETURNING returns the row"
    conn.execute(Q["forget_kafka_offsets"], (group_id, topic))  # the old marks mean nothing
    return int(row[0])

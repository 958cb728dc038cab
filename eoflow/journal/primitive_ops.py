"""Journal operations behind the durable primitives: messages, events, sleeps, children,
queues. The SQLite journal is built on this class (reads from SQLiteReader below it, writes
through the group committer it is given), so each layer owns the attributes it uses.

Each operation that a workflow performs as a step writes its effect and its step record in one
transaction, so a crash leaves either both or neither (a message is consumed exactly when its
recv is recorded; an event is published exactly when its set_event is recorded).
"""

from __future__ import annotations

import apsw

from eoflow.errors import WorkflowNotFoundError
from eoflow.journal.batching import GroupCommitter
from eoflow.journal.reader import SQLiteReader
from eoflow.journal.records import StepRecord
from eoflow.journal.sql import Q


def insert_step(conn: apsw.Connection, record: StepRecord) -> None:
    conn.execute(Q["insert_step"], (
        record.workflow_id, record.step, record.name, record.kind.value, record.output,
        record.error, record.attempts, record.started_ms, record.ended_ms,
    ))


class PrimitiveOps(SQLiteReader):
    """Reads committed data as a SQLiteReader; writes through `committer`."""

    def __init__(self, path: str, reader: apsw.Connection, committer: GroupCommitter) -> None:
        super().__init__(path, reader)
        self.committer = committer

    # -- messages -----------------------------------------------------------------------------

    def send_message(self, destination: str, topic: str, message: str, now_ms: int,
                     step: StepRecord | None = None) -> None:
        """Queue `message` for `destination` (which must exist), with the sender's step."""

        def send(conn: apsw.Connection) -> None:
            if conn.execute(Q["workflow_name_status"], (destination,)).fetchone() is None:
                raise WorkflowNotFoundError(destination)
            conn.execute(Q["insert_message"], (destination, topic, message, now_ms))
            if step is not None:
                insert_step(conn, step)

        self.committer.write(send, savepoint=True)

    def take_message(self, destination: str, topic: str, step: StepRecord) -> str | None:
        """Consume the oldest message for (destination, topic) and record `step` with it as
        output, atomically; None (and nothing recorded) when there is none."""

        def take(conn: apsw.Connection) -> str | None:
            row = conn.execute(Q["first_message"], (destination, topic)).fetchone()
            if row is None:
                return None
            seq, message = row
            conn.execute(Q["delete_message"], (seq,))
            insert_step(conn, StepRecord(step.workflow_id, step.step, step.name, step.kind,
                                         message, None, 1, step.started_ms, step.ended_ms))
            return str(message)

        return self.committer.write(take, savepoint=True)

    # -- events -------------------------------------------------------------------------------

    def set_event(self, workflow_id: str, key: str, value: str, now_ms: int,
                  step: StepRecord | None) -> None:
        """Publish an event, with the step that did it (none from inside a step: the step's
        own record is the one replay uses)."""

        def publish(conn: apsw.Connection) -> None:
            conn.execute(Q["upsert_event"], (workflow_id, key, value, now_ms))
            if step is not None:
                insert_step(conn, step)

        self.committer.write(publish, savepoint=True)

    def get_event(self, workflow_id: str, key: str) -> str | None:
        rows = self._all("get_event", (workflow_id, key))
        return str(rows[0][0]) if rows else None

    # -- sleeping and family ------------------------------------------------------------------

    def set_not_before(self, workflow_id: str, not_before_ms: int | None) -> None:
        """A hint for recovery: the run sleeps until then (its SLEEP step is the truth)."""
        self.committer.write(
            lambda conn: conn.execute(Q["set_not_before"], (not_before_ms, workflow_id)),
            wait=False)

    def live_children(self, workflow_id: str) -> list[str]:
        return [row[0] for row in self._all("live_children", (workflow_id,))]

    def latest_run_of(self, name: str, prefix: str) -> str | None:
        rows = self._all("latest_run_of", (name, prefix))
        return str(rows[0][0]) if rows else None

    # -- queues -------------------------------------------------------------------------------

    def queue_running(self, queue: str) -> int:
        return int(self._all("queue_running", (queue,))[0][0])

    def queue_next_due(self, queue: str, now_ms: int) -> int | None:
        value = self._all("queue_next_due", (queue, now_ms))[0][0]
        return None if value is None else int(value)

    def dequeue(self, queue: str, now_ms: int, by_priority: bool, limit: int
                ) -> list[tuple[str, str, str]]:
        """Move up to `limit` ready runs of `queue` from ENQUEUED to PENDING, in queue order;
        returns (workflow id, name, inputs) of each, durably."""

        def take(conn: apsw.Connection) -> list[tuple[str, str, str]]:
            rows = conn.execute(Q["queue_ready"], (queue, now_ms, by_priority, limit)).fetchall()
            for workflow_id, _, _ in rows:
                conn.execute(Q["dequeue"], (now_ms, workflow_id))
            return [(str(w), str(n), str(i)) for w, n, i in rows]

        return self.committer.write(take, savepoint=True)
